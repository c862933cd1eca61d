"""The producer's metrics: every RPC by method and status code with its duration (a gRPC
interceptor), orders accepted and refused by reason, idempotent replays, and publish latency
(`publishes`, told of each answer by the Kafka publisher)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from time import perf_counter
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from pedidos.adapters.metrics.measured import FAST_BUCKETS, PublishMetrics, messaging_metrics
from pedidos.services.errors import Reason, ServiceError
from pedidos.services.intake import OrderIntake
from producer.drain import CallsInProgress


class ProducerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # OTel's rpc.server.call.duration, in Prometheus form.
        self.rpc_duration = Histogram(
            "rpc_server_call_duration_seconds",
            "gRPC calls served, by method and status code.",
            ["rpc_system", "rpc_method", "rpc_response_status_code"],
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self.publishes = PublishMetrics(*messaging_metrics(self.registry))
        accepted = Counter(
            "pedidos_orders_accepted",
            "Orders acknowledged by the broker and answered as accepted (replays included).",
            registry=self.registry,
        )
        self._accepted = accepted
        refused = Counter(
            "pedidos_orders_refused",
            "Orders refused, by reason (invalid, conflict, unavailable: not acknowledged...).",
            ["reason"],
            registry=self.registry,
        )
        self._refused = {reason: refused.labels(reason=reason.value) for reason in Reason}
        # Counted by the interceptor's wrappers: a stop waits for these, not for calls that no
        # handler runs (producer.drain).
        self.calls = CallsInProgress()

    def settled(self, refusal: ServiceError | None) -> None:
        """One order's answer: accepted (None) or refused with a reason."""
        if refusal is None:
            self._accepted.inc()
        else:
            self._refused[refusal.reason].inc()

    def watch_intake(self, intake: OrderIntake) -> None:
        self.registry.register(_ReplaysCollector(intake))

    def interceptor(self) -> RpcMetricsInterceptor:
        return RpcMetricsInterceptor(self.rpc_duration, self.calls)


class _ReplaysCollector(Collector):
    """Read at scrape time: the intake (a service, free of I/O libraries) only counts."""

    def __init__(self, intake: OrderIntake) -> None:
        self._intake = intake

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "pedidos_idempotent_replays",
            "CreateOrder requests answered from an earlier publish with the same idempotency key.",
        )
        family.add_metric([], self._intake.replays)
        yield family


Handler = Callable[[Any, grpc.aio.ServicerContext], Any]


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Times every call and labels it with the status code it ended with; counts the calls
    whose handler runs (`calls`).

    A method's handler is wrapped once and reused (gRPC asks for it on every call), and each
    (method, code) keeps its histogram child: a call costs one dictionary lookup here."""

    def __init__(self, duration: Histogram, calls: CallsInProgress) -> None:
        self._duration = duration
        self._calls = calls
        # Per method: the handler last seen and its wrapped form.
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(str(method).lstrip("/"), handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: Any) -> Any:
        kind = next(
            k
            for k in ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
            if getattr(handler, k) is not None
        )
        behavior = getattr(handler, kind)
        wrap = _wrap_stream if inspect.isasyncgenfunction(behavior) else _wrap_call
        return handler._replace(**{kind: wrap(behavior, self._observe(method), self._calls)})

    def _observe(self, method: str) -> Callable[[float, str], None]:
        children: dict[str, Any] = {}

        def observe(elapsed: float, code: str) -> None:
            child = children.get(code)
            if child is None:
                child = children[code] = self._duration.labels("grpc", method, code)
            child.observe(elapsed)

        return observe


def _code(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code()
    if code is not None:
        return code.name
    return "OK" if error is None else "UNKNOWN"


def _wrap_call(
    behavior: Handler, observe: Callable[[float, str], None], calls: CallsInProgress
) -> Handler:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = perf_counter()
        error: BaseException | None = None
        calls.began()
        try:
            return await behavior(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            calls.ended()
            observe(perf_counter() - start, _code(context, error))

    return call


def _wrap_stream(
    behavior: Handler, observe: Callable[[float, str], None], calls: CallsInProgress
) -> Handler:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        start = perf_counter()
        error: BaseException | None = None
        calls.began()
        try:
            async for item in behavior(request, context):
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            calls.ended()
            observe(perf_counter() - start, _code(context, error))

    return stream
