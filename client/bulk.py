"""CreateOrders: many orders on one bidirectional stream, at most `window` awaiting their result."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc

from client.batch_sender import STATUS_BY_NUMBER
from pedidos.v1 import orders_pb2, orders_pb2_grpc


@dataclass(frozen=True, slots=True)
class BulkError:
    """The order at `index` was not accepted; `code` says whether a retry (same key) makes sense."""

    index: int
    code: grpc.StatusCode
    message: str


@dataclass(frozen=True, slots=True)
class BulkReport:
    sent: int
    # Stream position → order id, for every order Kafka acknowledged.
    accepted: dict[int, str]
    errors: tuple[BulkError, ...]
    elapsed_s: float
    # Set when the stream itself failed: the orders without a result may or may not exist.
    stream_error: grpc.StatusCode | None = None
    stream_error_message: str = ""

    @property
    def unanswered(self) -> int:
        return self.sent - len(self.accepted) - len(self.errors)

    @property
    def rate_per_s(self) -> float:
        return len(self.accepted) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def order_ids(self) -> list[str]:
        """Accepted order ids in the order they were sent."""
        return [self.accepted[index] for index in sorted(self.accepted)]


async def send_bulk(
    channel: grpc.aio.Channel,
    requests: Iterable[orders_pb2.CreateOrderRequest],
    window: int,
    *,
    timeout_s: float | None = None,
    metadata: Sequence[tuple[str, str]] | None = None,
) -> BulkReport:
    """Stream every request, keeping at most `window` without a result, and collect the results.

    Results arrive in the order Kafka acknowledges them and are matched by their index.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    stub = orders_pb2_grpc.OrderServiceStub(channel)
    call = stub.CreateOrders(timeout=timeout_s, metadata=metadata)
    slots = asyncio.Semaphore(window)
    sent = 0
    accepted: dict[int, str] = {}
    errors: list[BulkError] = []

    async def write() -> None:
        nonlocal sent
        for request in requests:
            await slots.acquire()
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
                accepted[result.index] = result.accepted.order_id
            else:
                code = STATUS_BY_NUMBER.get(result.error.code, grpc.StatusCode.UNKNOWN)
                errors.append(BulkError(result.index, code, result.error.message))
        await writer
    except grpc.aio.AioRpcError as exc:
        stream_error, stream_message = exc.code(), exc.details() or ""
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, Exception):
            await writer
    return BulkReport(
        sent=sent,
        accepted=accepted,
        errors=tuple(sorted(errors, key=lambda error: error.index)),
        elapsed_s=time.perf_counter() - started,
        stream_error=stream_error,
        stream_error_message=stream_message,
    )
