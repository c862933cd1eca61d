"""The step logic with in-memory fakes (fakes only here; integration tests use real servers)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from typing import Any

import pytest

from consumer.workflow import Backoff, OrderWorkflow, StageDelays, StepHandedBack
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.kafka.publisher import PublishError
from pedidos.adapters.smtp_mailer import PermanentMailError, TransientMailError
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.ports import OutgoingEmail
from pedidos.wire.records import StateReached, decode
from tests.unit.factories import make_details

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ORDER_ID = "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"


def done(value: Any = None) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class FakeMailer:
    def __init__(self, transient_failures: int = 0, permanent: bool = False) -> None:
        self.sent: list[OutgoingEmail] = []
        self.transient_failures = transient_failures
        self.permanent = permanent
        self.attempts = 0

    async def send_async(self, message: OutgoingEmail) -> None:
        self.attempts += 1
        await asyncio.sleep(0.01)
        if self.permanent:
            raise PermanentMailError("550 mailbox unavailable")
        if self.transient_failures:
            self.transient_failures -= 1
            raise TransientMailError("connection refused")
        self.sent.append(message)


class FakeIndex:
    def __init__(self, write_delay_s: float = 0.0) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.write_delay_s = write_delay_s

    def recorded_event(self, order_id: str, state: str) -> asyncio.Future[dict[str, Any] | None]:
        return done(self.events.get(f"{order_id}:{state}"))

    def write_event(self, doc: dict[str, Any]) -> asyncio.Future[None]:
        if not self.write_delay_s:
            self.events.setdefault(f"{doc['order_id']}:{doc['state']}", doc)
            return done()

        async def slow() -> None:
            await asyncio.sleep(self.write_delay_s)
            self.events.setdefault(f"{doc['order_id']}:{doc['state']}", doc)

        return asyncio.ensure_future(slow())

    def write_order(self, doc: dict[str, Any]) -> asyncio.Future[None]:
        self.orders[doc["order_id"]] = doc
        return done()


class FakePublisher:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, bytes, list[tuple[str, bytes]]]] = []
        self.partitions: list[int | None] = []

    def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        self.records.append((topic, key, value, headers))
        self.partitions.append(partition)
        return done()


class Harness:
    def __init__(
        self,
        mailer: FakeMailer | None = None,
        index: FakeIndex | None = None,
        unrecorded_sends: int = 4,
    ) -> None:
        self.mailer = mailer or FakeMailer()
        self.index = index or FakeIndex()
        self.publisher = FakePublisher()
        self.dead: list[tuple[str, str, str]] = []

        async def dead_letter(kind: str, key: str, value: bytes, error: str) -> None:
            self.dead.append((kind, key, error))

        self.workflow = OrderWorkflow(
            mailer=self.mailer,
            index=self.index,
            publisher=self.publisher,
            renderer=EmailRenderer("Tienda <ventas@tienda.cl>"),
            states_topic="Pedidos.estados",
            delays=StageDelays(1.0, 1.0, random.Random(1)),
            dead_letter=dead_letter,
            backoff=Backoff(initial_s=0.001, max_s=0.002),
            clock=lambda: T0,
            unrecorded_sends=unrecorded_sends,
        )

    def states_published(self) -> list[StateReached]:
        out = []
        for _, _, value, headers in self.publisher.records:
            record = decode(value, headers)
            assert isinstance(record, StateReached)
            out.append(record)
        return out


def fresh_order() -> Order:
    return Order(ORDER_ID, make_details(), T0 - timedelta(seconds=1))


def test_a_step_emails_indexes_and_records_the_state() -> None:
    harness = Harness()
    asyncio.run(harness.workflow.enter(fresh_order(), OrderState.PROCESANDO, "corr"))
    assert [message_from_bytes(m.data)["X-Pedidos-State"] for m in harness.mailer.sent] == [
        "procesando"
    ]
    assert harness.index.events[f"{ORDER_ID}:Procesando"]["email_status"] == "sent"
    assert harness.index.orders[ORDER_ID]["state"] == "Procesando"
    (record,) = harness.states_published()
    assert record.state is OrderState.PROCESANDO
    assert record.stage_ends_at == T0 + timedelta(seconds=1)  # the drawn stage duration
    assert record.correlation_id == "corr"


def test_the_state_record_stays_on_the_partition_of_its_trigger() -> None:
    harness = Harness()
    asyncio.run(harness.workflow.enter(fresh_order(), OrderState.PROCESANDO, "c", partition=4))
    assert harness.publisher.partitions == [4]
    later = fresh_order()
    later.enter(OrderState.PROCESANDO, T0)
    asyncio.run(harness.workflow.enter(later, OrderState.PREPARACION, "c"))
    assert harness.publisher.partitions == [4, None]  # no trigger partition: the key decides


class ShortStatesTopic(FakePublisher):
    """A states topic with fewer partitions than the trigger's (topics grown unequally)."""

    def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        if partition is not None and partition >= 3:
            self.partitions.append(partition)
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(PublishError("Local: Unknown partition", unknown_partition=True))
            return future
        return super().publish(topic, key, value, headers, partition)


def test_a_missing_partition_falls_back_to_the_key_instead_of_retrying_forever() -> None:
    harness = Harness()
    harness.publisher = ShortStatesTopic()
    harness.workflow._publisher = harness.publisher
    asyncio.run(harness.workflow.enter(fresh_order(), OrderState.PROCESANDO, "c", partition=5))
    assert harness.publisher.partitions == [5, None]
    (record,) = harness.states_published()
    assert record.state is OrderState.PROCESANDO


def test_a_step_whose_partition_was_handed_over_sends_nothing() -> None:
    harness = Harness()
    with pytest.raises(StepHandedBack):
        asyncio.run(
            harness.workflow.enter(
                fresh_order(), OrderState.PROCESANDO, "c", partition=1, still_ours=lambda: False
            )
        )
    assert harness.mailer.sent == []
    assert harness.index.events == {}
    assert harness.states_published() == []
    # The next owner redoes it in full.
    asyncio.run(harness.workflow.enter(fresh_order(), OrderState.PROCESANDO, "c", partition=1))
    assert len(harness.mailer.sent) == 1


def test_a_redelivered_step_after_a_crash_does_not_email_again() -> None:
    index = FakeIndex()
    first = Harness(index=index)
    asyncio.run(first.workflow.enter(fresh_order(), OrderState.PROCESANDO, "c"))
    # A new process (empty memory) gets the same trigger again.
    second = Harness(index=index)
    asyncio.run(second.workflow.enter(fresh_order(), OrderState.PROCESANDO, "c"))
    assert second.mailer.sent == []
    # Its Kafka record might have been lost with the crash, so it is published again.
    assert [r.state for r in second.states_published()] == [OrderState.PROCESANDO]
    assert second.states_published()[0].order.reached == first.states_published()[0].order.reached


def test_duplicate_triggers_at_once_send_one_email() -> None:
    harness = Harness()

    async def scenario() -> None:
        await asyncio.gather(
            *(harness.workflow.enter(fresh_order(), OrderState.PROCESANDO, "c") for _ in range(5))
        )
        await harness.workflow.enter(fresh_order(), OrderState.PROCESANDO, "c")

    asyncio.run(scenario())
    assert len(harness.mailer.sent) == 1
    assert len(harness.publisher.records) == 1


def test_transient_smtp_failures_are_retried_until_sent() -> None:
    harness = Harness(mailer=FakeMailer(transient_failures=3))
    asyncio.run(harness.workflow.enter(fresh_order(), OrderState.PROCESANDO, "c"))
    assert harness.mailer.attempts == 4
    assert len(harness.mailer.sent) == 1
    assert harness.dead == []


def test_a_permanently_rejected_email_is_dead_lettered_and_the_order_goes_on() -> None:
    harness = Harness(mailer=FakeMailer(permanent=True))
    asyncio.run(harness.workflow.enter(fresh_order(), OrderState.PROCESANDO, "c"))
    assert [(kind, key) for kind, key, _ in harness.dead] == [("notification", ORDER_ID)]
    assert "550" in harness.dead[0][2]
    event = harness.index.events[f"{ORDER_ID}:Procesando"]
    assert event["email_status"] == "rejected"
    assert "550" in event["email_error"]
    assert [r.email_status for r in harness.states_published()] == ["rejected"]


def test_the_final_state_has_no_stage_delay() -> None:
    harness = Harness()
    order = fresh_order()
    for state in list(OrderState)[:-1]:
        order.enter(state, T0)
    asyncio.run(harness.workflow.enter(order, OrderState.FINALIZADO, "c"))
    (record,) = harness.states_published()
    assert record.state is OrderState.FINALIZADO
    assert record.stage_ends_at == T0


def test_sent_but_unrecorded_emails_never_exceed_the_limit() -> None:
    """What a crash can duplicate is bounded: sends wait for earlier sends to be recorded."""
    index = FakeIndex(write_delay_s=0.02)
    harness = Harness(index=index, unrecorded_sends=2)
    worst = 0
    original_send = harness.mailer.send_async

    async def observing_send(message: OutgoingEmail) -> None:
        nonlocal worst
        await original_send(message)
        recorded = len(index.events)
        worst = max(worst, len(harness.mailer.sent) - recorded)

    harness.mailer.send_async = observing_send  # type: ignore[method-assign]

    async def scenario() -> None:
        orders = [Order(f"00000000-0000-4000-8000-{i:012d}", make_details(), T0) for i in range(20)]
        await asyncio.gather(
            *(harness.workflow.enter(o, OrderState.PROCESANDO, "c") for o in orders)
        )

    asyncio.run(scenario())
    assert len(harness.mailer.sent) == 20
    assert worst == 2
