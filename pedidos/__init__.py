"""Shared core of the pedidos pipeline: domain, adapters, configuration, gRPC contract."""
