"""The RPC spans of `opentelemetry-instrumentation-grpc`, as explicit interceptors: a server or
channel built with them traces its calls, and none are added while tracing is off."""

from __future__ import annotations

from typing import Any

from pedidos.runtime import tracing

# Probes and tooling, not orders: their calls would crowd out the order traces.
UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")


def server_interceptors() -> list[Any]:
    if not tracing.enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    untraced = filters.any_of(*(filters.service_name(name) for name in UNTRACED_SERVICES))
    return [aio_server_interceptor(filter_=filters.negate(untraced))]


def client_interceptors() -> list[Any]:
    if not tracing.enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())
