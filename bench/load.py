"""gRPC load from one client process (run inside bench.workers).

- "health" / "create": closed loop, `concurrency` callers calling back to back. Timed mode
  counts calls completing inside [start_at + warmup_s, + duration_s]; count mode sends exactly
  `count` orders and returns their ids (the end-to-end run).
- "bulk": `concurrency` CreateOrderBatch calls in flight sharing `count` orders.
Every order is distinct (own customer e-mail and idempotency key), so no cache flatters it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devkit.credentials import aio_producer_channel
from devkit.orders import request_details
from pedidos.runtime.grpc_aio import keep_grpc_aio_runtime
from pedidos.v1 import orders_pb2, orders_pb2_grpc

Kind = Literal["health", "create", "bulk"]
DISTINCT_TEMPLATES = 512
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
CONNECTIONS_PER_CLIENT = 4
# Orders per CreateOrderBatch call in the bulk scenario (the producer accepts up to 1,000).
BULK_BATCH = 1_000
STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


@dataclass(frozen=True, slots=True)
class LoadSpec:
    kind: Kind
    address: str
    concurrency: int
    start_at: float  # time.time() at which the callers start
    warmup_s: float = 0.0
    duration_s: float | None = None
    count: int | None = None
    seed: int = 0
    key_prefix: str = "bench"
    deadline_s: float = 10.0


@dataclass(slots=True)
class LoadResult:
    completed: int = 0
    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    order_ids: list[str] = field(default_factory=list)
    last_done_at: float | None = None
    failure: str | None = None

    def absorb(self, other: LoadResult) -> None:
        """Add another client process's (or phase's) result to this one."""
        self.completed += other.completed
        self.latencies_s += other.latencies_s
        self.errors.update(other.errors)
        self.order_ids += other.order_ids
        ends = [t for t in (self.last_done_at, other.last_done_at) if t is not None]
        self.last_done_at = max(ends, default=None)


def order_requests(seed: int, key_prefix: str) -> Callable[[int], orders_pb2.CreateOrderRequest]:
    """Distinct CreateOrderRequests by number: templates with a unique customer and key."""
    templates = request_details(seed, DISTINCT_TEMPLATES)

    def make(sequence: int) -> orders_pb2.CreateOrderRequest:
        request = orders_pb2.CreateOrderRequest(
            order=templates[sequence % DISTINCT_TEMPLATES],
            idempotency_key=f"{key_prefix}-{sequence}",
        )
        request.order.customer_email = f"cliente.{key_prefix}.{sequence}@example.cl"
        return request

    return make


def _unary_call(spec: LoadSpec, channel: grpc.aio.Channel) -> Callable[[int], Awaitable[str]]:
    if spec.kind == "health":
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="")

        async def call_health(_: int) -> str:
            await health.Check(check, timeout=spec.deadline_s)
            return ""

        return call_health
    orders = orders_pb2_grpc.OrderServiceStub(channel)
    request = order_requests(spec.seed, spec.key_prefix)

    async def create(sequence: int) -> str:
        response = await orders.CreateOrder(request(sequence), timeout=spec.deadline_s)
        return str(response.order_id)

    return create


async def _closed_loop(
    spec: LoadSpec, channels: list[grpc.aio.Channel], result: LoadResult
) -> None:
    calls = [_unary_call(spec, channel) for channel in channels]
    # perf_counter for latencies; start_at is wall-clock so processes share it.
    offset = time.perf_counter() - time.time()
    measure_from = spec.start_at + offset + spec.warmup_s
    measure_until = measure_from + (spec.duration_s or 0.0)
    sequence = iter(range(spec.count if spec.count is not None else 1 << 62))

    async def caller(call: Callable[[int], Awaitable[str]]) -> None:
        for number in sequence:
            sent = time.perf_counter()
            if spec.count is None and sent >= measure_until:
                return
            try:
                order_id = await call(number)
                error = None
            except grpc.aio.AioRpcError as exc:
                order_id, error = "", exc.code().name
            done = time.perf_counter()
            # Throughput counts what completes inside the window, whenever it was sent.
            if spec.count is None and not measure_from <= done <= measure_until:
                continue
            if error is not None:
                result.errors[error] += 1
                continue
            result.completed += 1
            result.latencies_s.append(done - sent)
            if order_id:
                result.order_ids.append(order_id)

    await asyncio.gather(*(caller(calls[i % len(calls)]) for i in range(spec.concurrency)))


async def _bulk(spec: LoadSpec, channels: list[grpc.aio.Channel], result: LoadResult) -> None:
    """`concurrency` CreateOrderBatch calls in flight, BULK_BATCH orders each, spread over the
    connections like the unary callers."""
    request = order_requests(spec.seed, spec.key_prefix)
    total = spec.count or 0
    starts = iter(range(0, total, BULK_BATCH))

    async def sender(stub: orders_pb2_grpc.OrderServiceAsyncStub) -> None:
        for start in starts:
            batch = orders_pb2.CreateOrderBatchRequest(
                orders=(request(s) for s in range(start, min(start + BULK_BATCH, total)))
            )
            sent = time.perf_counter()
            response = await stub.CreateOrderBatch(batch, timeout=spec.deadline_s)
            result.latencies_s.append(time.perf_counter() - sent)
            for answer in response.results:
                if answer.WhichOneof("outcome") == "accepted":
                    result.completed += 1
                    result.order_ids.append(answer.accepted.order_id)
                else:
                    result.errors[STATUS_NAMES.get(answer.error.code, str(answer.error.code))] += 1

    stubs = [orders_pb2_grpc.OrderServiceStub(channel) for channel in channels]
    await asyncio.gather(*(sender(stubs[i % len(stubs)]) for i in range(spec.concurrency)))


async def _run(spec: LoadSpec) -> LoadResult:
    result = LoadResult()
    # A few connections per client process, so producer worker processes all get callers.
    count = max(1, min(spec.concurrency, CONNECTIONS_PER_CLIENT))
    channels = [aio_producer_channel(spec.address, options=OWN_CONNECTION) for _ in range(count)]
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), timeout=10)
        await asyncio.sleep(max(spec.start_at - time.time(), 0))
        try:
            if spec.kind == "bulk":
                await _bulk(spec, channels, result)
            else:
                await _closed_loop(spec, channels, result)
        except grpc.aio.AioRpcError as exc:
            # A whole stream failed (e.g. UNIMPLEMENTED): the caller decides what it means.
            result.errors[exc.code().name] += 1
        result.last_done_at = time.time()
    finally:
        for channel in channels:
            await channel.close()
    return result


def run_load(spec: LoadSpec) -> LoadResult:
    keep_grpc_aio_runtime()  # a bench runs many loads in this process
    try:
        return asyncio.run(_run(spec))
    except Exception as exc:
        return LoadResult(failure=f"{exc.__class__.__name__}: {exc}")
