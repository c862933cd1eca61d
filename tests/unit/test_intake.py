"""The intake's idempotency rule with in-memory publishers: one publish per key, conflicts refused,
nothing reported accepted before the broker's ack. No servers; milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar
from unittest.mock import patch

import pytest

from devkit.orders import make_details
from pedidos.domain.order import new_order_id
from pedidos.ports import PublishError
from pedidos.services.errors import NotAcknowledged, OrderRejected, Reason
from pedidos.services.intake import OrderIdSecrets, OrderIntake, RecentKeys, Submission, settle
from pedidos.wire.records import OrderAccepted, decode, header_value
from tests.unit.fakes import T0, FakeClock, FakePendingPublisher, FakePublisher

T = TypeVar("T")
TOPIC = "Pedidos"
EMAIL = "cliente@example.cl"
SECRET = b"s" * 32


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), 10))


def intake(publisher: FakePublisher | FakePendingPublisher, keys: int = 100) -> OrderIntake:
    return OrderIntake(
        publisher, TOPIC, remembered_keys=keys, secrets=OrderIdSecrets(SECRET), clock=FakeClock()
    )


def test_an_order_is_published_once_to_the_topic_keyed_by_its_id() -> None:
    async def scenario() -> None:
        publisher = FakePublisher()
        submission = intake(publisher).submit(make_details(), "k-1", "corr-7")
        await settle((submission,), 1.0)
        assert submission.failure() is None
        assert submission.order_id == new_order_id(EMAIL, "k-1", SECRET)
        assert submission.accepted_at == T0
        ((topic, key, value, headers),) = publisher.records
        assert (topic, key) == (TOPIC, submission.order_id)
        record = decode(value, headers)
        assert isinstance(record, OrderAccepted)
        assert record.order.details == make_details()
        assert record.order.accepted_at == T0
        assert header_value(headers, "correlation-id") == "corr-7"

    run(scenario)


def test_a_retry_with_the_same_key_and_content_gets_the_same_order_and_publishes_nothing() -> None:
    async def scenario() -> None:
        publisher = FakePublisher()
        orders = intake(publisher)
        first = orders.submit(make_details(), "k-1", "a")
        again = orders.submit(make_details(), "k-1", "b")
        assert again is first
        assert len(publisher.records) == 1

    run(scenario)


def test_the_same_key_for_different_content_is_a_conflict_and_is_not_published() -> None:
    async def scenario() -> None:
        publisher = FakePublisher()
        orders = intake(publisher)
        orders.submit(make_details(), "k-1", "a")
        with pytest.raises(OrderRejected) as caught:
            orders.submit(make_details(product_name="Otra cosa"), "k-1", "b")
        assert caught.value.reason is Reason.CONFLICT
        assert "idempotency_key" in caught.value.message
        assert len(publisher.records) == 1

    run(scenario)


def test_concurrent_duplicates_share_one_publish_and_its_outcome() -> None:
    async def scenario() -> None:
        publisher = FakePendingPublisher()
        orders = intake(publisher)
        submissions = [orders.submit(make_details(), "k-1", str(i)) for i in range(5)]
        assert all(s is submissions[0] for s in submissions)
        assert len(publisher.records) == 1
        # In flight: no one is told "accepted" yet.
        assert all(isinstance(s.failure(), NotAcknowledged) for s in submissions)
        publisher.ack()
        await settle(submissions, 1.0)
        assert [s.failure() for s in submissions] == [None] * 5

    run(scenario)


def test_a_failed_publish_is_never_reported_accepted_and_a_retry_publishes_again() -> None:
    async def scenario() -> None:
        publisher = FakePendingPublisher()
        orders = intake(publisher)
        first = orders.submit(make_details(), "k-1", "a")
        publisher.fail(PublishError("Broker: Not enough in-sync replicas"))
        await settle((first,), 1.0)
        failure = first.failure()
        assert isinstance(failure, NotAcknowledged)
        assert failure.reason is Reason.UNAVAILABLE
        assert "in-sync replicas" in failure.message
        assert "retry with the same idempotency_key" in failure.message
        # The retry is not answered from the failed publish: it publishes the same order again.
        retry = orders.submit(make_details(), "k-1", "b")
        assert retry is not first
        assert retry.order_id == first.order_id
        assert len(publisher.records) == 2
        publisher.ack()
        assert retry.failure() is None

    run(scenario)


def test_an_ack_that_does_not_come_in_time_is_a_failure_but_the_publish_goes_on() -> None:
    async def scenario() -> None:
        publisher = FakePendingPublisher()
        orders = intake(publisher)
        first = orders.submit(make_details(), "k-1", "a")
        await settle((first,), 0.01)
        failure = first.failure()
        assert failure is not None
        assert "timed out" in failure.message
        # The wait did not cancel the delivery: the retry shares it instead of publishing twice.
        assert not first.delivery.done()
        retry = orders.submit(make_details(), "k-1", "b")
        assert retry is first
        assert len(publisher.records) == 1

    run(scenario)


def test_orders_without_a_key_are_always_new() -> None:
    async def scenario() -> None:
        publisher = FakePublisher()
        orders = intake(publisher)
        a = orders.submit(make_details(), None, "a")
        b = orders.submit(make_details(), "", "b")
        assert a.order_id != b.order_id
        assert len(publisher.records) == 2

    run(scenario)


def test_the_same_key_of_two_customers_is_two_orders() -> None:
    async def scenario() -> None:
        publisher = FakePublisher()
        orders = intake(publisher)
        a = orders.submit(make_details(), "k-1", "a")
        b = orders.submit(make_details(customer_email="otra@example.cl"), "k-1", "b")
        assert a.order_id != b.order_id
        assert len(publisher.records) == 2

    run(scenario)


@pytest.mark.parametrize("key", ["x" * 129, "clé", "tab\there"])
def test_a_malformed_key_is_invalid_and_nothing_is_published(key: str) -> None:
    async def scenario() -> None:
        publisher = FakePublisher()
        with pytest.raises(OrderRejected) as caught:
            intake(publisher).submit(make_details(), key, "a")
        assert caught.value.reason is Reason.INVALID
        assert caught.value.message.startswith("idempotency_key")
        assert publisher.records == []

    run(scenario)


def test_a_forgotten_key_publishes_again_under_the_same_order_id() -> None:
    """Past PRODUCER_IDEMPOTENCY_KEYS a process forgets a key; the derived id still makes the
    second record the same order (the consumer's effects are keyed by order_id)."""

    async def scenario() -> list[Submission]:
        publisher = FakePublisher()
        orders = intake(publisher, keys=1)
        first = orders.submit(make_details(), "k-1", "a")
        orders.submit(make_details(), "k-2", "b")
        again = orders.submit(make_details(), "k-1", "c")
        assert len(publisher.records) == 3
        return [first, again]

    first, again = run(scenario)
    assert again is not first
    assert again.order_id == first.order_id


def test_settle_waits_for_every_delivery_whatever_order_the_acks_come_in() -> None:
    async def scenario() -> None:
        publisher = FakePendingPublisher()
        orders = intake(publisher)
        submissions = [orders.submit(make_details(), f"k-{i}", "c") for i in range(4)]
        loop = asyncio.get_running_loop()
        publisher.ack(0)  # already settled when the wait starts
        # The others in reverse order, each on its own loop turn.
        for turn, index in enumerate((3, 1, 2)):
            loop.call_later(0.001 * (turn + 1), publisher.ack, index)
        await settle(submissions, 5.0)
        assert [s.failure() for s in submissions] == [None] * 4

    run(scenario)


def test_settle_shares_one_deadline_among_its_deliveries() -> None:
    async def scenario() -> None:
        publisher = FakePendingPublisher()
        orders = intake(publisher)
        submissions = [orders.submit(make_details(), f"k-{i}", "c") for i in range(3)]
        loop = asyncio.get_running_loop()
        now = loop.time()
        waits: list[float] = []

        async def fake_wait(futures: object, timeout: float) -> None:  # noqa: ASYNC109
            # Each wait runs out its whole timeout: the broker never answers.
            nonlocal now
            waits.append(timeout)
            now += timeout

        with (
            patch.object(loop, "time", lambda: now),
            patch("pedidos.services.intake.asyncio.wait", fake_wait),
        ):
            await settle(submissions, 1.0)
        # The first wait used the whole budget; nothing was left for the others.
        assert waits == [pytest.approx(1.0)]
        assert all(isinstance(s.failure(), NotAcknowledged) for s in submissions)

    run(scenario)


def test_a_call_cancelled_while_it_waits_leaves_the_delivery_alone() -> None:
    async def scenario() -> None:
        publisher = FakePendingPublisher()
        orders = intake(publisher)
        first = orders.submit(make_details(), "k-1", "a")
        waiting = asyncio.create_task(settle((first,), 5.0))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # Not cancelled with the call: a retry shares it.
        assert not first.delivery.done()
        assert orders.submit(make_details(), "k-1", "b") is first
        publisher.ack()
        await asyncio.sleep(0)
        assert first.failure() is None

    run(scenario)


def test_a_retry_spanning_the_secret_switch_finds_the_order_accepted_under_the_old_one() -> None:
    async def scenario() -> None:
        publisher = FakePublisher()
        clock = FakeClock()
        secrets = OrderIdSecrets(b"n" * 32, previous=b"o" * 32, since=T0 + timedelta(seconds=5))
        orders = OrderIntake(publisher, TOPIC, 100, secrets, clock=clock)
        first = orders.submit(make_details(), "k-1", "a")
        assert first.order_id == new_order_id(EMAIL, "k-1", b"o" * 32)
        clock.advance(10)  # past the switch: new keys get ids under the new secret ...
        assert orders.submit(make_details(), "k-1", "b") is first  # ... a retry its old order
        fresh = orders.submit(make_details(), "k-2", "c")
        assert fresh.order_id == new_order_id(EMAIL, "k-2", b"n" * 32)
        assert len(publisher.records) == 2

    run(scenario)


def test_recent_keys_forget_the_least_recently_used_key_first() -> None:
    recent: RecentKeys[str] = RecentKeys(2, 60.0, clock=lambda: 0.0)
    recent["a"] = "A"
    recent["b"] = "B"
    assert recent.get("a") == "A"  # now "b" is the least recently used
    recent["c"] = "C"
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == ("A", None, "C")


def test_recent_keys_never_return_an_expired_key() -> None:
    now = 0.0
    recent: RecentKeys[str] = RecentKeys(10, 60.0, clock=lambda: now)
    recent["a"] = "A"
    now = 30.0
    recent["b"] = "B"
    assert recent.get("a") == "A"
    now = 60.0
    assert recent.get("a") is None
    recent["c"] = "C"
    assert recent.get("b") == "B"  # expires at 90
    now = 91.0
    assert recent.get("b") is None
    now = 121.0
    recent["d"] = "D"  # "c", expired, was the least recently used: dropped
    assert len(recent) == 1
    assert recent.get("d") == "D"
