"""CreateOrderBatch calls of up to 1,000 orders, with bounded concurrency, a deadline per call and
retries of just the orders the producer could not confirm."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Iterator
from itertools import islice
from typing import Protocol

import grpc

from client.connection import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    RETRYABLE_CODES,
    RetryableCall,
    order_service_stub,
    retry_log,
    status_from_number,
)
from client.outcomes import Confirmed, Failed, OnOutcome, OutcomeCollector, Rejected, SendReport
from pedidos.runtime.retry import Backoff, retry_async
from pedidos.v1 import orders_pb2

# More orders than this in one call and the producer refuses the whole call (INVALID_ARGUMENT).
MAX_BATCH_SIZE = 1_000

# Orders of one call, each with its position in the whole send.
_Chunk = list[tuple[int, orders_pb2.CreateOrderRequest]]
# An order's answer: its order id, or the status it was refused with.
_Answer = str | tuple[grpc.StatusCode, str]


class CreateOrderBatchStub(Protocol):
    def CreateOrderBatch(
        self, request: orders_pb2.CreateOrderBatchRequest, *, timeout: float
    ) -> Awaitable[orders_pb2.CreateOrderBatchResponse]: ...


def _chunks(orders: Iterable[orders_pb2.CreateOrderRequest], size: int) -> Iterator[_Chunk]:
    """`size` orders at a time, pulled lazily so a huge generator is never held whole."""
    numbered = enumerate(orders)
    while chunk := list(islice(numbered, size)):
        yield chunk


def _answers(response: orders_pb2.CreateOrderBatchResponse, count: int) -> list[_Answer]:
    results = response.results
    if len(results) != count:
        # Not the contract (one result per order): no answer can be matched to its order.
        message = f"el productor devolvió {len(results)} resultados para {count} pedidos"
        return [(grpc.StatusCode.INTERNAL, message)] * count
    return [
        result.accepted.order_id
        if result.HasField("accepted")
        else (status_from_number(result.error.code), result.error.message)
        for result in results
    ]


async def _call(stub: CreateOrderBatchStub, chunk: _Chunk, deadline_s: float) -> list[_Answer]:
    """One call for `chunk`: an answer per order; a failed call gives each order its status."""
    try:
        # The same requests (and so the same idempotency keys) on every attempt.
        response = await stub.CreateOrderBatch(
            orders_pb2.CreateOrderBatchRequest(orders=[request for _, request in chunk]),
            timeout=deadline_s,
        )
    except grpc.aio.AioRpcError as exc:
        return [(exc.code(), exc.details() or "")] * len(chunk)
    return _answers(response, len(chunk))


async def _send_chunk(
    stub: CreateOrderBatchStub,
    chunk: _Chunk,
    deadline_s: float,
    retries: int,
    backoff: Backoff,
    emit: OnOutcome,
) -> None:
    """Send `chunk`, then resend only its retryable failures, until every order has an outcome."""
    # Orders still without an outcome, with the retryable status they were last answered.
    unsettled = [(index, request, grpc.StatusCode.OK, "") for index, request in chunk]
    attempts = 0

    async def attempt() -> None:
        nonlocal unsettled, attempts
        attempts += 1
        pending = [(index, request) for index, request, _, _ in unsettled]
        answers = await _call(stub, pending, deadline_s)
        unsettled = []
        for (index, request), answer in zip(pending, answers, strict=True):
            key = request.idempotency_key
            if isinstance(answer, str):
                emit(Confirmed(index, key, answer, attempts))
            elif answer[0] in RETRYABLE_CODES:
                unsettled.append((index, request, *answer))
            else:
                emit(Rejected(index, key, *answer, attempts))
        if unsettled:
            raise RetryableCall(unsettled[0][2], unsettled[0][3])

    try:
        await retry_async(
            "CreateOrderBatch",
            attempt,
            retry_on=(RetryableCall,),
            backoff=backoff,
            attempts=retries + 1,
            logger=retry_log,
        )
    except RetryableCall:
        for index, request, code, message in unsettled:
            emit(Failed(index, request.idempotency_key, code, message, attempts))


async def send_batches(
    stub_or_channel: CreateOrderBatchStub | grpc.aio.Channel,
    orders: Iterable[orders_pb2.CreateOrderRequest],
    batch_size: int,
    concurrency: int,
    deadline_s: float,
    retries: int = DEFAULT_RETRIES,
    *,
    backoff: Backoff = DEFAULT_BACKOFF,
    on_outcome: OnOutcome | None = None,
) -> SendReport:
    """Send the orders in CreateOrderBatch calls of `batch_size`, at most `concurrency` calls in
    flight, and report each order's outcome exactly as `send_orders` does.

    Every call has a deadline of `deadline_s`. Orders answered UNAVAILABLE or DEADLINE_EXCEEDED,
    alone or because the whole call failed so, are resent (same request) up to `retries` times.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    stub = order_service_stub(stub_or_channel)
    # Workers share one lazy iterator of chunks: at most `concurrency` chunks are held at a time.
    chunks = _chunks(orders, batch_size)
    collector = OutcomeCollector(on_outcome)

    async def worker() -> None:
        for chunk in chunks:
            await _send_chunk(stub, chunk, deadline_s, retries, backoff, collector.add)

    return await collector.run(concurrency, worker)
