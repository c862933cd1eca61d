"""CreateOrder calls, one order each: bounded concurrency, a deadline per call, retries."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Protocol

import grpc

from client.connection import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    RETRYABLE_CODES,
    RetryableCall,
    order_service_stub,
    retry_log,
)
from client.outcomes import (
    Confirmed,
    Failed,
    OnOutcome,
    Outcome,
    OutcomeCollector,
    Rejected,
    SendReport,
)
from pedidos.runtime.retry import Backoff, retry_async
from pedidos.v1 import orders_pb2


class CreateOrderStub(Protocol):
    """What send_orders needs of a stub: the generated one, or a wrapper that counts calls."""

    def CreateOrder(
        self, request: orders_pb2.CreateOrderRequest, *, timeout: float
    ) -> Awaitable[orders_pb2.CreateOrderResponse]: ...


async def _send_one(
    stub: CreateOrderStub,
    index: int,
    request: orders_pb2.CreateOrderRequest,
    deadline_s: float,
    retries: int,
    backoff: Backoff,
) -> Outcome:
    key = request.idempotency_key
    attempts = 0

    async def attempt() -> orders_pb2.CreateOrderResponse:
        nonlocal attempts
        attempts += 1
        try:
            # The same request (and so the same idempotency key) on every attempt.
            return await stub.CreateOrder(request, timeout=deadline_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in RETRYABLE_CODES:
                raise RetryableCall(exc.code(), exc.details() or "") from exc
            raise

    try:
        response = await retry_async(
            "CreateOrder",
            attempt,
            retry_on=(RetryableCall,),
            backoff=backoff,
            attempts=retries + 1,
            logger=retry_log,
        )
    except RetryableCall as exc:
        return Failed(index, key, exc.code, exc.message, attempts)
    except grpc.aio.AioRpcError as exc:
        return Rejected(index, key, exc.code(), exc.details() or "", attempts)
    return Confirmed(index, key, response.order_id, attempts)


async def send_orders(
    stub_or_channel: CreateOrderStub | grpc.aio.Channel,
    orders: Iterable[orders_pb2.CreateOrderRequest],
    concurrency: int,
    deadline_s: float,
    retries: int = DEFAULT_RETRIES,
    *,
    backoff: Backoff = DEFAULT_BACKOFF,
    on_outcome: OnOutcome | None = None,
) -> SendReport:
    """Send every order with at most `concurrency` calls in flight, and report each outcome.

    `stub_or_channel` is an OrderService stub or a `grpc.aio.Channel`. Every call has a deadline
    of `deadline_s`; UNAVAILABLE and DEADLINE_EXCEEDED are retried up to `retries` times.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    stub = order_service_stub(stub_or_channel)
    # A fixed pool of workers sharing one iterator, rather than a task per order, keeps memory
    # flat for big batches and lets `orders` be a lazy generator.
    pending = enumerate(orders)
    collector = OutcomeCollector(on_outcome)

    async def worker() -> None:
        for index, request in pending:
            collector.add(await _send_one(stub, index, request, deadline_s, retries, backoff))

    return await collector.run(concurrency, worker)
