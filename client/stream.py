"""CreateOrders: many orders on one bidirectional stream, at most `window` awaiting their result.

No retries here: an order refused for a retryable reason, or left without a result when the
stream breaks, is reported as failed (send it again with the same idempotency key)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc

from client.connection import RETRYABLE_CODES, status_from_number
from client.outcomes import (
    Confirmed,
    Failed,
    OnOutcome,
    Outcome,
    OutcomeCollector,
    Rejected,
    SendReport,
)
from pedidos.v1 import orders_pb2, orders_pb2_grpc

# The most orders a stream may have awaiting their result (the CLI's `--stream N`).
MAX_WINDOW = 1_000
# Shown for an order a stream that ended cleanly never answered (not the contract).
NO_RESULT = "el flujo terminó sin resultado para este pedido"


@dataclass(frozen=True, slots=True)
class OrderError:
    """The order at `index` was not accepted; `code` says whether a retry (same key) makes sense."""

    index: int
    code: grpc.StatusCode
    message: str


@dataclass(frozen=True, slots=True)
class StreamReport:
    sent: int
    # Stream position → order id, for every order Kafka acknowledged.
    accepted: dict[int, str]
    errors: tuple[OrderError, ...]
    elapsed_s: float
    # Set when the stream itself failed: the orders without a result may or may not exist.
    stream_error: grpc.StatusCode | None = None
    stream_error_message: str = ""
    # Stream position → the order's idempotency key, for every order sent.
    keys: tuple[str, ...] = ()

    @property
    def unanswered(self) -> int:
        return self.sent - len(self.accepted) - len(self.errors)

    @property
    def rate_per_s(self) -> float:
        return len(self.accepted) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def order_ids(self) -> list[str]:
        """Accepted order ids in the order they were sent."""
        return [self.accepted[index] for index in sorted(self.accepted)]

    def unanswered_outcomes(self) -> list[Failed]:
        """The orders sent without a result, failed with the stream's status."""
        answered = self.accepted.keys() | {error.index for error in self.errors}
        code = self.stream_error or grpc.StatusCode.INTERNAL
        message = self.stream_error_message if self.stream_error else NO_RESULT
        return [
            Failed(index, self.keys[index], code, message, 1)
            for index in range(self.sent)
            if index not in answered
        ]

    def as_send_report(self) -> SendReport:
        """The same outcomes as the unary and batch senders report, for the summary."""
        collector = OutcomeCollector()
        for index, order_id in self.accepted.items():
            collector.add(_outcome(index, self.keys[index], order_id))
        for error in self.errors:
            collector.add(_outcome(error.index, self.keys[error.index], error))
        for failed in self.unanswered_outcomes():
            collector.add(failed)
        return collector.report(self.elapsed_s)


def _outcome(index: int, key: str, answer: str | OrderError) -> Outcome:
    if isinstance(answer, str):
        return Confirmed(index, key, answer, 1)
    if answer.code in RETRYABLE_CODES:
        return Failed(index, key, answer.code, answer.message, 1)
    return Rejected(index, key, answer.code, answer.message, 1)


async def send_stream(
    channel: grpc.aio.Channel,
    requests: Iterable[orders_pb2.CreateOrderRequest],
    window: int,
    *,
    timeout_s: float | None = None,
    metadata: Sequence[tuple[str, str]] | None = None,
    on_outcome: OnOutcome | None = None,
) -> StreamReport:
    """Stream every request, keeping at most `window` without a result, and collect the results.

    Results arrive in the order Kafka acknowledges them and are matched by their index;
    `on_outcome` hears each as it arrives, and the unanswered ones once the stream is over.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    call = orders_pb2_grpc.OrderServiceStub(channel).CreateOrders(
        timeout=timeout_s, metadata=metadata
    )
    slots = asyncio.Semaphore(window)
    # Known before its write returns: its result may be read first.
    keys: list[str] = []
    sent = 0
    accepted: dict[int, str] = {}
    errors: list[OrderError] = []

    def settle(index: int, answer: str | OrderError) -> None:
        if isinstance(answer, str):
            accepted[index] = answer
        else:
            errors.append(answer)
        if on_outcome is not None:
            on_outcome(_outcome(index, keys[index], answer))

    async def write() -> None:
        nonlocal sent
        for request in requests:
            await slots.acquire()
            keys.append(request.idempotency_key)
            await call.write(request)
            sent += 1
        await call.done_writing()

    started = time.perf_counter()
    writer = asyncio.create_task(write())
    stream_error: grpc.StatusCode | None = None
    stream_message = ""
    try:
        async for result in call:
            slots.release()
            if result.WhichOneof("outcome") == "accepted":
                settle(result.index, result.accepted.order_id)
            else:
                code = status_from_number(result.error.code)
                settle(result.index, OrderError(result.index, code, result.error.message))
        await writer
    except grpc.aio.AioRpcError as exc:
        stream_error, stream_message = exc.code(), exc.details() or ""
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, Exception):
            await writer
    report = StreamReport(
        sent=sent,
        accepted=accepted,
        errors=tuple(sorted(errors, key=lambda error: error.index)),
        elapsed_s=time.perf_counter() - started,
        stream_error=stream_error,
        stream_error_message=stream_message,
        keys=tuple(keys),
    )
    if on_outcome is not None:
        for failed in report.unanswered_outcomes():
            on_outcome(failed)
    return report
