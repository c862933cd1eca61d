"""Prometheus metrics and the /metrics, /healthz, /readyz endpoint of the producer and consumer."""
