"""Starts a service's metrics endpoint from settings, or nothing when METRICS_PORT is unset."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pedidos.adapters.metrics.endpoint import Heartbeat, MetricsEndpoint, Readiness
from pedidos.runtime.config import Settings
from pedidos.runtime.supervisor import worker_index


def start_endpoint(
    settings: Settings, registry: CollectorRegistry, ready: Readiness
) -> tuple[MetricsEndpoint, Heartbeat] | None:
    """Call on the event loop (the heartbeat runs there); close the endpoint on shutdown."""
    if settings.metrics_port is None:
        return None
    heartbeat = Heartbeat()
    heartbeat.start()
    port = settings.metrics_port + worker_index()
    endpoint = MetricsEndpoint(registry, heartbeat, ready, settings.metrics_host, port)
    return endpoint.start(), heartbeat


def stop_endpoint(started: tuple[MetricsEndpoint, Heartbeat] | None) -> None:
    if started is not None:
        endpoint, heartbeat = started
        heartbeat.stop()
        endpoint.close()
