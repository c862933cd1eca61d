"""GetOrder/WatchOrder logic with an in-memory lookup and a hand-fed fan-out: ordering, dedupe,
gaps, unknown orders, cancellation and the watcher registry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from devkit.orders import make_details
from pedidos.adapters.kafka.state_feed import read_state
from pedidos.domain.order import Order
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.services.errors import Reason, TrackingError
from pedidos.services.tracking import OrderTracker, StateFanout
from pedidos.wire.records import StateReached, encode_state_reached
from tests.unit.fakes import FakeOrderLookup

T = TypeVar("T")
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
P, PREP, ENV, ENT, FIN = ALL_STATES


def order_at(order_id: str, state: OrderState) -> Order:
    order = Order(order_id=order_id, details=make_details(), accepted_at=START)
    for step in ALL_STATES[: state.position + 1]:
        order.enter(step, START + timedelta(seconds=step.position + 1))
    return order


def progress(order_id: str, state: OrderState) -> StateReached:
    """A state record as the feed delivers it: encoded, then read back."""
    record = encode_state_reached(
        StateReached(
            order=order_at(order_id, state),
            state=state,
            stage_ends_at=START,
            email_status="sent",
            correlation_id="c",
        )
    )
    parsed = read_state(record)
    assert parsed is not None
    return parsed


def run(coro: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(coro(), 10))


def tracking(lookup: FakeOrderLookup, fanout: StateFanout, wait_s: float = 5.0) -> OrderTracker:
    return OrderTracker(lookup, fanout, unknown_order_wait_s=wait_s)


async def collect(tracker: OrderTracker, order_id: str, time_left: float | None = None) -> list:
    return [s async for s, _ in tracker.watch(order_id, lambda: time_left)]


def test_watch_sends_the_indexed_state_then_only_forward_moves() -> None:
    order_id = str(uuid.uuid4())

    async def scenario() -> list[OrderState]:
        lookup, fanout = FakeOrderLookup(), StateFanout()
        lookup.orders[order_id] = order_at(order_id, ENV)
        task = asyncio.create_task(collect(tracking(lookup, fanout), order_id))
        await asyncio.sleep(0.05)
        assert fanout.watchers == 1
        # Late and duplicate records (redelivery, a redone step) are dropped.
        fanout.publish([progress(order_id, PREP), progress(order_id, ENV)])
        fanout.publish([progress(order_id, ENT), progress(order_id, ENT)])
        fanout.publish([progress(order_id, FIN)])
        states = await task
        assert fanout.watchers == 0
        return states

    assert run(scenario) == [ENV, ENT, FIN]


def test_a_skipped_state_is_filled_from_the_walk_of_the_next_record() -> None:
    order_id = str(uuid.uuid4())

    async def scenario() -> list[tuple[OrderState, datetime]]:
        lookup, fanout = FakeOrderLookup(), StateFanout()
        lookup.orders[order_id] = order_at(order_id, PREP)
        tracker = tracking(lookup, fanout)
        changes = tracker.watch(order_id, lambda: None)
        first = await anext(changes)
        fanout.publish([progress(order_id, FIN)])  # Enviado and Entregado never seen alone
        return [first] + [change async for change in changes]

    changes = run(scenario)
    assert [s for s, _ in changes] == [PREP, ENV, ENT, FIN]
    assert [at for _, at in changes] == [START + timedelta(seconds=i) for i in (2, 3, 4, 5)]


def test_a_change_published_while_the_index_is_read_is_not_lost() -> None:
    order_id = str(uuid.uuid4())

    class SlowLookup(FakeOrderLookup):
        async def find(self, order_id: str) -> Order | None:
            # The consumer moves the order on while Elasticsearch answers with the old state.
            fanout.publish([progress(order_id, ENT)])
            return order_at(order_id, ENV)

    fanout = StateFanout()

    async def scenario() -> list[OrderState]:
        task = asyncio.create_task(collect(tracking(SlowLookup(), fanout), order_id))
        await asyncio.sleep(0.05)
        fanout.publish([progress(order_id, FIN)])
        return await task

    assert run(scenario) == [ENT, FIN]


def test_an_order_not_indexed_yet_is_watched_from_the_feed() -> None:
    order_id = str(uuid.uuid4())

    async def scenario() -> list[OrderState]:
        lookup, fanout = FakeOrderLookup(), StateFanout()
        task = asyncio.create_task(collect(tracking(lookup, fanout), order_id))
        await asyncio.sleep(0.05)
        for state in ALL_STATES:
            fanout.publish([progress(order_id, state)])
            await asyncio.sleep(0)
        return await task

    assert run(scenario) == list(ALL_STATES)


def test_the_feed_ahead_of_the_index_wins() -> None:
    order_id = str(uuid.uuid4())

    async def scenario() -> tuple[list[OrderState], Order]:
        lookup, fanout = FakeOrderLookup(), StateFanout()
        lookup.orders[order_id] = order_at(order_id, PREP)
        fanout.publish([progress(order_id, FIN)])
        tracker = tracking(lookup, fanout)
        return await collect(tracker, order_id), await tracker.get(order_id, None)

    states, order = run(scenario)
    assert states == [FIN]
    assert order.state is FIN
    assert order.details == make_details()


def test_get_prefers_the_feed_level_with_the_index_and_the_index_ahead_of_it() -> None:
    """Level: the feed's record keeps microseconds, the document only milliseconds (here the two
    differ by one, so the test sees which one answered)."""
    order_id = str(uuid.uuid4())

    async def scenario() -> tuple[Order, Order]:
        lookup, fanout = FakeOrderLookup(), StateFanout()
        indexed = order_at(order_id, ENV)
        indexed.reached = {s: at + timedelta(milliseconds=1) for s, at in indexed.reached.items()}
        lookup.orders[order_id] = indexed
        fanout.publish([progress(order_id, ENV)])
        tracker = tracking(lookup, fanout)
        level = await tracker.get(order_id, None)
        lookup.orders[order_id] = order_at(order_id, ENT)
        return level, await tracker.get(order_id, None)

    level, behind = run(scenario)
    assert level.reached == order_at(order_id, ENV).reached
    assert level is not behind
    assert behind.state is ENT


def test_an_unknown_order_is_not_found_after_the_wait() -> None:
    async def scenario() -> tuple[Reason, int]:
        lookup, fanout = FakeOrderLookup(), StateFanout()
        with pytest.raises(TrackingError) as caught:
            await collect(tracking(lookup, fanout, wait_s=0.1), str(uuid.uuid4()))
        return caught.value.reason, fanout.watchers

    assert run(scenario) == (Reason.NOT_FOUND, 0)


def test_with_a_deadline_an_unknown_order_is_waited_for_until_just_before_it() -> None:
    async def scenario() -> float:
        lookup, fanout = FakeOrderLookup(), StateFanout()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TrackingError):
            await collect(tracking(lookup, fanout, wait_s=0.01), str(uuid.uuid4()), 0.6)
        return loop.time() - started

    assert 0.3 < run(scenario) < 0.6


@pytest.mark.parametrize("order_id", ["", "abc", "1234", "x" * 36])
def test_malformed_ids_are_invalid_argument(order_id: str) -> None:
    async def scenario() -> list[Reason]:
        lookup, fanout = FakeOrderLookup(), StateFanout()
        tracker = tracking(lookup, fanout)
        codes = []
        for call in (lambda: tracker.get(order_id, None), lambda: collect(tracker, order_id)):
            with pytest.raises(TrackingError) as caught:
                await call()
            codes.append(caught.value.reason)
        assert lookup.calls == 0
        return codes

    assert run(scenario) == [Reason.INVALID] * 2


def test_get_order_not_found_and_store_down() -> None:
    async def scenario() -> list[Reason]:
        lookup, fanout = FakeOrderLookup(), StateFanout()
        tracker = tracking(lookup, fanout)
        codes = []
        with pytest.raises(TrackingError) as caught:
            await tracker.get(str(uuid.uuid4()), None)
        codes.append(caught.value.reason)
        lookup.down = True
        for call in (
            lambda: tracker.get(str(uuid.uuid4()), None),
            lambda: collect(tracker, str(uuid.uuid4())),
        ):
            with pytest.raises(TrackingError) as caught:
                await call()
            codes.append(caught.value.reason)
        assert fanout.watchers == 0
        return codes

    assert run(scenario) == [
        Reason.NOT_FOUND,
        Reason.UNAVAILABLE,
        Reason.UNAVAILABLE,
    ]


def test_cancelled_watchers_leave_the_registry_empty() -> None:
    ids = [str(uuid.uuid4()) for _ in range(50)]

    async def scenario() -> tuple[int, int]:
        lookup, fanout = FakeOrderLookup(), StateFanout()
        for order_id in ids[:25]:
            lookup.orders[order_id] = order_at(order_id, P)
        tracker = tracking(lookup, fanout, wait_s=30)
        tasks = [asyncio.create_task(collect(tracker, i)) for i in ids for _ in range(2)]
        await asyncio.sleep(0.1)
        registered = fanout.watchers
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return registered, fanout.watchers

    assert run(scenario) == (100, 0)


def test_closing_ends_every_watch_with_unavailable_and_refuses_new_ones() -> None:
    order_id = str(uuid.uuid4())

    async def scenario() -> list[object]:
        lookup, fanout = FakeOrderLookup(), StateFanout()
        lookup.orders[order_id] = order_at(order_id, P)
        tracker = tracking(lookup, fanout)
        tasks = [asyncio.create_task(collect(tracker, order_id)) for _ in range(3)]
        await asyncio.sleep(0.05)
        fanout.close()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        with pytest.raises(TrackingError) as late:
            await collect(tracker, order_id)
        return [getattr(o, "reason", o) for o in outcomes] + [late.value.reason, fanout.watchers]

    unavailable = Reason.UNAVAILABLE
    assert run(scenario) == [unavailable] * 4 + [0]


def test_the_remembered_walk_only_moves_forward() -> None:
    fanout = StateFanout(remembered=2)
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    fanout.publish([progress(a, ENV), progress(a, PREP), progress(b, P)])
    latest = fanout.latest(a)
    assert latest is not None
    assert latest.state is ENV
    fanout.publish([progress(c, P)])  # bounded: the least recently used is forgotten
    assert fanout.latest(a) is None or fanout.latest(b) is None
