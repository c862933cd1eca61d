"""The order walk (one step of an order) with the in-memory fakes of tests/unit/fakes.py."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from email import message_from_bytes
from typing import Any

import pytest

from devkit.orders import make_details
from pedidos.adapters.email.render import EmailRenderer
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.ports import OutgoingEmail, PermanentMailError, PublishError, TransientMailError
from pedidos.runtime.retry import Backoff
from pedidos.services.order_walk import (
    MAX_STAGE_WAIT_S,
    NextStep,
    OrderWalk,
    StageDelays,
    StepHandedBack,
    next_step,
)
from pedidos.wire.records import OrderAccepted, StateReached, decode
from tests.unit.fakes import T0, FakeIndex, FakeMailer, FakePublisher

ORDER_ID = "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"


class Harness:
    def __init__(
        self,
        mailer: FakeMailer | None = None,
        index: FakeIndex | None = None,
        unrecorded_sends: int = 4,
        remembered_steps: int = 20_000,
    ) -> None:
        self.mailer = mailer or FakeMailer()
        self.index = index or FakeIndex()
        self.publisher = FakePublisher()
        self.dead: list[tuple[str, str, str]] = []

        async def dead_letter(kind: str, key: str, value: bytes, error: str) -> None:
            self.dead.append((kind, key, error))

        self.walk = OrderWalk(
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
            remembered_steps=remembered_steps,
        )

    def states_published(self) -> list[StateReached]:
        out = []
        for _, _, value, headers in self.publisher.records:
            record = decode(value, headers)
            assert isinstance(record, StateReached)
            out.append(record)
        return out


def fresh_order(order_id: str = ORDER_ID) -> Order:
    return Order(order_id, make_details(), T0 - timedelta(seconds=1))


def numbered_orders(count: int) -> list[Order]:
    """`count` distinct orders accepted at T0."""
    return [Order(f"00000000-0000-4000-8000-{i:012d}", make_details(), T0) for i in range(count)]


def test_a_step_emails_indexes_and_records_the_state() -> None:
    harness = Harness()
    asyncio.run(harness.walk.enter(fresh_order(), OrderState.PROCESANDO, "corr"))
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
    asyncio.run(harness.walk.enter(fresh_order(), OrderState.PROCESANDO, "c", partition=4))
    assert harness.publisher.partitions == [4]
    later = fresh_order()
    later.enter(OrderState.PROCESANDO, T0)
    asyncio.run(harness.walk.enter(later, OrderState.PREPARACION, "c"))
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
    harness.walk._publisher = harness.publisher
    asyncio.run(harness.walk.enter(fresh_order(), OrderState.PROCESANDO, "c", partition=5))
    assert harness.publisher.partitions == [5, None]
    (record,) = harness.states_published()
    assert record.state is OrderState.PROCESANDO


def test_a_step_whose_partition_was_handed_over_sends_nothing() -> None:
    harness = Harness()
    with pytest.raises(StepHandedBack):
        asyncio.run(
            harness.walk.enter(
                fresh_order(), OrderState.PROCESANDO, "c", partition=1, still_ours=lambda: False
            )
        )
    assert harness.mailer.sent == []
    assert harness.index.events == {}
    assert harness.states_published() == []
    # The next owner redoes it in full.
    asyncio.run(harness.walk.enter(fresh_order(), OrderState.PROCESANDO, "c", partition=1))
    assert len(harness.mailer.sent) == 1


def test_a_redelivered_step_after_a_crash_does_not_email_again() -> None:
    index = FakeIndex()
    first = Harness(index=index)
    asyncio.run(first.walk.enter(fresh_order(), OrderState.PROCESANDO, "c"))
    # A new process (empty memory) gets the same trigger again.
    second = Harness(index=index)
    asyncio.run(second.walk.enter(fresh_order(), OrderState.PROCESANDO, "c"))
    assert second.mailer.sent == []
    # Its Kafka record might have been lost with the crash, so it is published again.
    assert [r.state for r in second.states_published()] == [OrderState.PROCESANDO]
    assert second.states_published()[0].order.reached == first.states_published()[0].order.reached


def test_duplicate_triggers_at_once_send_one_email() -> None:
    harness = Harness()

    async def scenario() -> None:
        await asyncio.gather(
            *(harness.walk.enter(fresh_order(), OrderState.PROCESANDO, "c") for _ in range(5))
        )
        await harness.walk.enter(fresh_order(), OrderState.PROCESANDO, "c")

    asyncio.run(scenario())
    assert len(harness.mailer.sent) == 1
    assert len(harness.publisher.records) == 1


def test_transient_smtp_failures_are_retried_until_sent() -> None:
    harness = Harness(
        mailer=FakeMailer(*(TransientMailError("connection refused") for _ in range(3)))
    )
    asyncio.run(harness.walk.enter(fresh_order(), OrderState.PROCESANDO, "c"))
    assert harness.mailer.attempts == 4
    assert len(harness.mailer.sent) == 1
    assert harness.dead == []


def test_a_permanently_rejected_email_is_dead_lettered_and_the_order_goes_on() -> None:
    harness = Harness(mailer=FakeMailer(always=PermanentMailError("550 mailbox unavailable")))
    asyncio.run(harness.walk.enter(fresh_order(), OrderState.PROCESANDO, "c"))
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
    asyncio.run(harness.walk.enter(order, OrderState.FINALIZADO, "c"))
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
        orders = numbered_orders(20)
        await asyncio.gather(*(harness.walk.enter(o, OrderState.PROCESANDO, "c") for o in orders))

    asyncio.run(scenario())
    assert len(harness.mailer.sent) == 20
    assert worst == 2


def test_the_ledger_is_hurried_only_once_every_send_slot_waits_for_it() -> None:
    """With every slot waiting for its ledger entry no e-mail can go out, so no event could
    join the bulk while it waits out its batching interval: the walk asks for it at once."""

    def hurried_with(orders: int) -> int:
        index = FakeIndex(write_delay_s=0.02)
        harness = Harness(index=index, unrecorded_sends=3)

        async def scenario() -> None:
            walks = (
                harness.walk.enter(o, OrderState.PROCESANDO, "c") for o in numbered_orders(orders)
            )
            await asyncio.gather(*walks)

        asyncio.run(scenario())
        assert len(index.events) == orders
        # Only the ledger, with every slot's entry waiting: the current states need not go
        # (an order alone hurries its current state too, below).
        assert not [pending for pending in index.hurried_pending if pending >= 3]
        return sum(1 for pending in index.hurried_ledger_pending if pending >= 3)

    assert hurried_with(2) == 0  # a slot is free: the next e-mail's event may still come
    assert hurried_with(3) == 1
    assert hurried_with(7) >= 2


@pytest.mark.parametrize(("orders", "alone"), [(1, True), (2, False)])
def test_an_order_alone_is_not_held_for_a_batch_but_orders_walking_together_are(
    orders: int, alone: bool
) -> None:
    """Alone, nothing can join what a step asks of the index, so every ledger write goes at
    once, and the current state once the ledger entry is stored (not beside it, where its
    request delayed the ledger's answer and so the next step), except the last state's, which
    no step follows; with another step in progress both wait for the batch (a free slot stays
    free)."""
    index = FakeIndex(write_delay_s=0.01)
    harness = Harness(index=index, unrecorded_sends=32)

    async def walk(order: Order) -> None:
        for state in OrderState:
            await harness.walk.enter(order, state, "c")

    async def scenario() -> None:
        await asyncio.gather(*(walk(order) for order in numbered_orders(orders)))

    asyncio.run(scenario())
    assert len(index.events) == 5 * orders
    # A ledger write hurried alone: its own event is still being stored.
    hurried_ledger = sum(1 for pending in index.hurried_ledger_pending if pending > 0)
    assert hurried_ledger == (4 if alone else 0)
    # The current state hurried after the ledger entry was stored; the last beside it.
    assert index.hurried_pending == ([0, 0, 0, 0, 1] if alone else [])
    # And each step's ledger read (the harness reads it before every step).
    assert index.hurried_lookups == (5 if alone else 0)


def test_the_current_state_document_is_submitted_with_the_ledger_entry() -> None:
    """The order document is written while the ledger entry is still being stored, not after
    it."""
    index = FakeIndex(write_delay_s=0.2)
    harness = Harness(index=index)
    seen_during_ledger_write: list[str] = []

    async def scenario() -> None:
        step = asyncio.ensure_future(harness.walk.enter(fresh_order(), OrderState.PROCESANDO, "c"))
        await asyncio.sleep(0.02)  # e-mailed at once; the event's write (0.2 s) is under way
        assert harness.mailer.sent
        assert not index.events
        seen_during_ledger_write.extend(index.orders)
        await step

    asyncio.run(scenario())
    assert seen_during_ledger_write == [ORDER_ID]
    assert index.orders[ORDER_ID]["state"] == OrderState.PROCESANDO.value
    assert [r.state for r in harness.states_published()] == [OrderState.PROCESANDO]


def test_a_state_record_waits_for_its_ledger_entry_even_for_an_order_alone() -> None:
    """The record that walks the order on goes only once its step's ledger entry is stored: a
    step whose ledger write fails for good dead-letters its record and the walk stops there,
    for a replay to resume (sent early, an order alone walked on, and the integration test
    `test_a_document_elasticsearch_refuses_for_good_dead_letters_its_record_with_the_reason`
    saw its later steps e-mailed and dead-lettered one by one)."""
    index = FakeIndex(write_delay_s=0.2)
    harness = Harness(index=index)
    seen: dict[str, int] = {}

    async def scenario() -> None:
        step = asyncio.ensure_future(harness.walk.enter(fresh_order(), OrderState.PROCESANDO, "c"))
        await asyncio.sleep(0.05)  # e-mailed at once; its ledger write (0.2 s) goes on
        seen["sent"] = len(harness.mailer.sent)
        seen["published"] = len(harness.publisher.records)
        await step

    asyncio.run(scenario())
    assert seen == {"sent": 1, "published": 0}
    assert [r.state for r in harness.states_published()] == [OrderState.PROCESANDO]


@pytest.mark.parametrize(("same_order", "hurried_lookups"), [(True, 3), (False, 1)])
def test_an_orders_next_steps_beside_its_unfinished_step_are_still_alone(
    same_order: bool, hurried_lookups: int
) -> None:
    """An order alone's next step can start before its step has ended (the record that
    triggers it can come back before the step has its acknowledgement), and so could the one
    after: steps of one order are still one order alone, so their requests are hurried as
    well. Other orders' steps are not alone. (The test starts them while the first waits for
    its ledger entry, which the walk itself never does.)"""
    index = FakeIndex(write_delay_s=0.1)
    harness = Harness(index=index)
    order = fresh_order()
    if same_order:
        steps = [(order, state) for state in list(OrderState)[:3]]
    else:
        steps = [(order, OrderState.PROCESANDO)]
        steps += [(other, OrderState.PROCESANDO) for other in numbered_orders(2)]

    async def scenario() -> None:
        started = []
        for walking, state in steps:
            started.append(asyncio.ensure_future(harness.walk.enter(walking, state, "c")))
            await asyncio.sleep(0.02)  # e-mailed; its ledger write goes on
        assert not any(step.done() for step in started)
        await asyncio.gather(*started)

    asyncio.run(scenario())
    assert len(index.events) == 3
    assert index.hurried_lookups == hurried_lookups


def test_an_accepted_order_enters_the_first_state_at_once() -> None:
    step = next_step(OrderAccepted(fresh_order(), "corr"))
    assert step is not None
    assert (step.state, step.due, step.correlation_id) == (OrderState.PROCESANDO, None, "corr")
    assert step.wait_s(T0) == 0


def test_a_reached_state_leads_to_the_next_once_its_stage_ends() -> None:
    order = fresh_order()
    order.enter(OrderState.PROCESANDO, T0)
    ends = T0 + timedelta(seconds=2)
    step = next_step(StateReached(order, OrderState.PROCESANDO, ends, "sent", "c"))
    assert step is not None
    assert (step.state, step.due) == (OrderState.PREPARACION, ends)
    assert step.wait_s(T0) == 2.0
    assert step.wait_s(ends + timedelta(seconds=5)) == 0  # overdue: at once


def test_the_final_state_leads_nowhere() -> None:
    order = fresh_order()
    for state in OrderState:
        order.enter(state, T0)
    assert next_step(StateReached(order, OrderState.FINALIZADO, T0, "sent", "c")) is None


def test_a_stage_ending_absurdly_late_is_waited_for_at_most_a_minute() -> None:
    step = NextStep(fresh_order(), OrderState.ENVIADO, T0 + timedelta(days=3), "c")
    assert step.wait_s(T0) == MAX_STAGE_WAIT_S


class CountingIndex(FakeIndex):
    """Records every ledger read."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[tuple[str, str]] = []

    def recorded_event(self, order_id: str, state: str) -> asyncio.Future[dict[str, Any] | None]:
        self.lookups.append((order_id, state))
        return super().recorded_event(order_id, state)


def take_step(
    harness: Harness,
    state: OrderState,
    order_id: str = ORDER_ID,
    partition: int = 2,
    lease: object = 1,
) -> None:
    """`state`'s step, triggered by the record of the state before it (as the walk published
    it), read from `partition` under `lease`."""
    triggers = [
        r.order
        for r in harness.states_published()
        if r.order.order_id == order_id and r.state.next() is state
    ]
    order = triggers[-1] if triggers else fresh_order(order_id)
    asyncio.run(harness.walk.enter(order, state, "c", partition=partition, lease=lease))


def emails_to_order(harness: Harness, order_id: str = ORDER_ID) -> list[str]:
    return [
        str(message_from_bytes(m.data)["X-Pedidos-State"])
        for m in harness.mailer.sent
        if message_from_bytes(m.data)["X-Pedidos-Order-Id"] == order_id
    ]


def test_a_trigger_this_walk_published_under_the_same_lease_skips_the_ledger_read() -> None:
    index = CountingIndex()
    harness = Harness(index=index)
    take_step(harness, OrderState.PROCESANDO)  # the producer's record: read the ledger
    take_step(harness, OrderState.PREPARACION)  # its own record, same partition and lease
    assert index.lookups == [(ORDER_ID, "Procesando")]
    take_step(harness, OrderState.ENVIADO, lease=2)  # the partition was assigned anew since
    take_step(harness, OrderState.ENTREGADO, partition=3, lease=2)  # not where it published
    take_step(harness, OrderState.FINALIZADO, lease=None)  # the lease is unknown
    assert [state for _, state in index.lookups] == [
        "Procesando",
        "Enviado",
        "Entregado",
        "Finalizado",
    ]
    assert len(emails_to_order(harness)) == 5


def two_steps_then_forgotten(index: CountingIndex) -> Harness:
    """The order's first two steps under one lease, then two other orders' steps that push
    them out of the walk's memory of completed steps (it remembers two)."""
    harness = Harness(index=index, remembered_steps=2)
    take_step(harness, OrderState.PROCESANDO)
    take_step(harness, OrderState.PREPARACION)
    for other in (f"{ORDER_ID[:-1]}2", f"{ORDER_ID[:-1]}3"):
        take_step(harness, OrderState.PROCESANDO, order_id=other, lease=None)
    return harness


def test_a_trigger_this_walk_published_is_trusted_once() -> None:
    index = CountingIndex()
    harness = two_steps_then_forgotten(index)
    take_step(harness, OrderState.PREPARACION)  # the same record read again
    assert index.lookups[-1] == (ORDER_ID, "Preparación")
    assert emails_to_order(harness) == ["procesando", "preparacion"]


def test_a_step_redone_from_the_ledger_does_not_vouch_for_its_record() -> None:
    """A dead letter replayed, a redelivery: the step is found in the ledger and its record
    published again, but the next step may have been taken from the first copy already."""
    index = CountingIndex()
    harness = two_steps_then_forgotten(index)
    take_step(harness, OrderState.PROCESANDO)  # the order record again: redone from the ledger
    take_step(harness, OrderState.PREPARACION)  # triggered by the record the redo published
    assert index.lookups[-2:] == [(ORDER_ID, "Procesando"), (ORDER_ID, "Preparación")]
    assert emails_to_order(harness) == ["procesando", "preparacion"]


def test_steps_started_together_are_not_alone_even_the_first() -> None:
    """The first of several steps started at once reaches the index before the others have
    begun: it is judged alone only once they have, so it waits for the batch like them."""
    index = FakeIndex(write_delay_s=0.01)
    harness = Harness(index=index, unrecorded_sends=32)

    async def scenario() -> None:
        orders = numbered_orders(3)
        await asyncio.gather(*(harness.walk.enter(o, OrderState.PROCESANDO, "c") for o in orders))

    asyncio.run(scenario())
    assert len(index.events) == 3
    assert index.hurried == 0
    assert index.hurried_lookups == 0
