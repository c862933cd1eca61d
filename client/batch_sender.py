"""CreateOrderBatch calls of up to 1,000 orders, with bounded concurrency, a deadline per call and
retries of just the orders the producer could not confirm."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import grpc

from client.sender import (
    DEFAULT_RETRIES,
    RETRYABLE_CODES,
    Accepted,
    Backoff,
    Failed,
    Outcome,
    OutcomeCollector,
    Rejected,
    SendReport,
    order_service_stub,
)
from pedidos.v1 import orders_pb2

# More orders than this in one call and the producer refuses the whole call (INVALID_ARGUMENT).
MAX_BATCH_SIZE = 1_000
# Per-order results carry the status code as its number.
STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

# Orders of one call, each with its position in the whole send.
_Chunk = list[tuple[int, orders_pb2.CreateOrderRequest]]
# An order's answer: its order id, or the status it was refused with.
_Answer = str | tuple[grpc.StatusCode, str]


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
        else (
            STATUS_BY_NUMBER.get(result.error.code, grpc.StatusCode.UNKNOWN),
            result.error.message,
        )
        for result in results
    ]


async def _send_chunk(
    stub: Any,
    chunk: _Chunk,
    deadline_s: float,
    retries: int,
    backoff: Backoff,
    rng: random.Random,
    emit: Callable[[Outcome], None],
) -> None:
    """Send `chunk`, then resend only its retryable failures, until every order has an outcome."""
    pending = chunk
    attempt = 0
    while pending:
        attempt += 1
        try:
            # The same requests (and so the same idempotency keys) on every attempt.
            response = await stub.CreateOrderBatch(
                orders_pb2.CreateOrderBatchRequest(orders=[request for _, request in pending]),
                timeout=deadline_s,
            )
        except grpc.aio.AioRpcError as exc:
            # The whole call failed: each of its orders gets the call's status.
            answers: list[_Answer] = [(exc.code(), exc.details() or "")] * len(pending)
        else:
            answers = _answers(response, len(pending))
        retry: _Chunk = []
        for (index, request), answer in zip(pending, answers, strict=True):
            key = request.idempotency_key
            if isinstance(answer, str):
                emit(Accepted(index, key, answer, attempt))
                continue
            code, message = answer
            if code not in RETRYABLE_CODES:
                emit(Rejected(index, key, code, message, attempt))
            elif attempt > retries:
                emit(Failed(index, key, code, message, attempt))
            else:
                retry.append((index, request))
        pending = retry
        if pending:
            await asyncio.sleep(backoff.delay(attempt, rng))


async def send_batches(
    stub_or_channel: Any,
    orders: Iterable[orders_pb2.CreateOrderRequest],
    batch_size: int,
    concurrency: int,
    deadline_s: float,
    retries: int = DEFAULT_RETRIES,
    *,
    backoff: Backoff | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    rng: random.Random | None = None,
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
    backoff = backoff or Backoff()
    rng = rng or random.Random()
    # Workers share one lazy iterator of chunks: at most `concurrency` chunks are held at a time.
    chunks = _chunks(orders, batch_size)
    collector = OutcomeCollector(on_outcome)

    async def worker() -> None:
        for chunk in chunks:
            await _send_chunk(stub, chunk, deadline_s, retries, backoff, rng, collector.add)

    return await collector.run(concurrency, worker)
