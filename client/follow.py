"""GetOrder and WatchOrder from the client: an order's status, its changes, many followed to
Finalizado (a broken watch is reopened with the shared backoff)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import grpc

from pedidos.domain.states import OrderState
from pedidos.runtime.retry import Backoff
from pedidos.v1 import orders_pb2
from pedidos.wire.proto_mapping import datetime_from_timestamp, state_from_proto

if TYPE_CHECKING:
    from pedidos.v1.orders_pb2_grpc import OrderServiceAsyncStub

# A watch that broke (producer restarting, order not consumed yet) is opened again; after this
# many failures in a row without progress the order is given up.
MAX_FAILURES_WITHOUT_PROGRESS = 20
GAP_LOOKUP_TIMEOUT_S = 5.0
MAX_PAUSE_S = 5.0
RETRYABLE_WATCH_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.NOT_FOUND,  # accepted, but the consumer has not started its walk yet
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
    }
)


@dataclass(frozen=True, slots=True)
class Change:
    order_id: str
    state: OrderState
    reached_at: datetime


@dataclass(frozen=True, slots=True)
class WatchFailure:
    """Following `order_id` was given up; the order itself may well be fine."""

    order_id: str
    code: grpc.StatusCode
    message: str


def change_from_proto(message: orders_pb2.OrderStateChange) -> Change | None:
    state = state_from_proto(message.state)
    if state is None:
        return None
    return Change(message.order_id, state, datetime_from_timestamp(message.reached_at))


async def get_order(
    stub: OrderServiceAsyncStub, order_id: str, deadline_s: float
) -> orders_pb2.Order:
    """The order as the producer knows it; raises grpc.aio.AioRpcError."""
    return await stub.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=deadline_s)


async def watch_order(
    stub: OrderServiceAsyncStub, order_id: str, timeout_s: float | None = None
) -> AsyncIterator[Change]:
    """The current state, then each change; ends after Finalizado. Raises grpc.aio.AioRpcError."""
    call = stub.WatchOrder(orders_pb2.WatchOrderRequest(order_id=order_id), timeout=timeout_s)
    try:
        async for message in call:
            change = change_from_proto(message)
            if change is not None:
                yield change
    finally:
        call.cancel()


async def _passed_between(
    stub: OrderServiceAsyncStub, order_id: str, position: int, change: Change
) -> list[Change]:
    """The states reached after `position` and before `change`; none if GetOrder fails."""
    try:
        order = await get_order(stub, order_id, GAP_LOOKUP_TIMEOUT_S)
    except grpc.aio.AioRpcError:
        return []  # the lines are missing, not the order: following goes on
    passed = []
    for item in order.reached:
        state = state_from_proto(item.state)
        if state is not None and position < state.position < change.state.position:
            passed.append(Change(order_id, state, datetime_from_timestamp(item.reached_at)))
    return sorted(passed, key=lambda missed: missed.state.position)


async def follow_order(
    stub: OrderServiceAsyncStub,
    order_id: str,
    on_change: Callable[[Change], None],
    *,
    rng: random.Random | None = None,
    max_failures: int = MAX_FAILURES_WITHOUT_PROGRESS,
    pause_s: float = 0.2,
    missing_is_final: bool = False,
    on_retry: Callable[[WatchFailure], None] | None = None,
) -> WatchFailure | None:
    """Watch until Finalizado, opening the watch again when it breaks; None when finalized.

    `missing_is_final`: NOT_FOUND before the first change means the order does not exist (for
    an id someone typed); afterwards it is retried like a restart. `on_retry` hears each break.
    """
    rng = rng or random.Random()
    # Not retry_async: the count of failures starts again whenever the order moves on.
    backoff = Backoff(initial_s=pause_s, max_s=MAX_PAUSE_S)
    failures = 0
    position = -1
    while True:
        try:
            async for change in watch_order(stub, order_id):
                if change.state.position > position:
                    if 0 <= position < change.state.position - 1:
                        # Reopened after a break: the states passed meanwhile, from GetOrder.
                        for missed in await _passed_between(stub, order_id, position, change):
                            on_change(missed)
                    position = change.state.position
                    failures = 0
                    on_change(change)
            if position >= OrderState.FINALIZADO.position:
                return None
            code, message = grpc.StatusCode.UNAVAILABLE, "the watch ended early"
        except grpc.aio.AioRpcError as exc:
            code, message = exc.code(), exc.details() or ""
            unknown = missing_is_final and position < 0 and code == grpc.StatusCode.NOT_FOUND
            if code not in RETRYABLE_WATCH_CODES or unknown:
                return WatchFailure(order_id, code, message)
        failures += 1
        if failures >= max_failures:
            return WatchFailure(order_id, code, message)
        if on_retry is not None:
            on_retry(WatchFailure(order_id, code, message))
        await asyncio.sleep(backoff.delay(failures, rng))


async def follow_orders(
    stub: OrderServiceAsyncStub,
    order_ids: Iterable[str],
    concurrency: int,
    on_change: Callable[[Change], None],
    *,
    pause_s: float = 0.2,
) -> list[WatchFailure]:
    """Follow every order to Finalizado with at most `concurrency` watches open at once."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    pending = iter(order_ids)
    failures: list[WatchFailure] = []

    async def worker() -> None:
        for order_id in pending:
            failure = await follow_order(stub, order_id, on_change, pause_s=pause_s)
            if failure is not None:
                failures.append(failure)

    async with asyncio.TaskGroup() as workers:
        for _ in range(concurrency):
            workers.create_task(worker())
    return failures
