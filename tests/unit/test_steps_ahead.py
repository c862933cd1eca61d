"""Steps taken ahead of their state record: with no stage delay, the consumer takes an order's
next step as soon as the step before it is recorded, without waiting for the broker to
acknowledge that step's state record and deliver it back. The record, once read, finds the step
done (or running, or failed) and is committed like any other.

The consumer here is wired as consumer/app.py wires it, over the fakes of test_consumer_loop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from typing import Any

import pytest

from consumer import scheduling
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.ports import OutgoingEmail, PermanentIndexError
from pedidos.runtime import tracing
from pedidos.services.order_walk import StageDelays
from pedidos.wire.records import StateReached, decode
from tests.unit.fakes import FakeIndex, FakeMailer
from tests.unit.test_consumer_loop import DLQ, ORDERS, STATES, Consumer, HeldMailer, run, until

NO_DELAY = StageDelays(0.0, 0.0)
STATES_IN_ORDER = list(OrderState)


def slugs(mailer: FakeMailer) -> list[str]:
    """The state of each e-mail sent, in order (its Message-ID names it)."""
    return [m.message_id.split(".", 1)[1].split("@")[0] for m in mailer.sent]


@pytest.mark.parametrize(
    ("delays", "e_mailed"),
    [(NO_DELAY, len(OrderState)), (StageDelays(1.0, 2.0, random.Random(7)), 1)],
    ids=["no stage delay", "stage delays"],
)
def test_with_no_stage_delay_a_walk_does_not_wait_for_its_state_records(
    delays: StageDelays, e_mailed: int
) -> None:
    """The broker takes no state record (never answers): with no stage delay the order still
    walks to the end, e-mailing each state once; with stage delays, its next step waits for its
    record as before. Either way nothing is committed: the records were never acknowledged."""
    consumer = Consumer(delays=delays, unanswered=frozenset({STATES}), broker_patience_s=0.05)
    order_id = consumer.order()

    async def scenario() -> None:
        await until(lambda: len(consumer.mailer.sent) == e_mailed)
        await asyncio.sleep(0.05)  # no further step starts

    run(consumer.run(scenario))
    assert slugs(consumer.mailer) == [s.slug for s in STATES_IN_ORDER[:e_mailed]]
    assert consumer.state(order_id) == STATES_IN_ORDER[e_mailed - 1].value
    assert len(consumer.index.events) == e_mailed
    # The stop handed every step back (each waited for the broker): nothing to commit.
    assert consumer.committed(ORDERS, 0) is None
    assert consumer.committed(STATES, 0) is None


def test_records_of_steps_taken_ahead_find_them_done_and_are_committed() -> None:
    consumer = Consumer(delays=NO_DELAY)
    ids = [consumer.order(partition=i % 2) for i in range(4)]

    async def scenario() -> None:
        await until(lambda: consumer.finished(*ids))
        await until(lambda: len(consumer.publisher.on(STATES)) == 4 * len(OrderState))
        await until(lambda: not consumer.source.queued)  # every state record read back

    run(consumer.run(scenario))
    # Each e-mail once, each state record once: the records did not take their steps again.
    e_mails = [m.message_id for m in consumer.mailer.sent]
    assert len(e_mails) == len(set(e_mails)) == 4 * len(OrderState)
    published = [decode(value, headers) for _, _, value, headers in consumer.publisher.on(STATES)]
    steps = [(r.order.order_id, r.state) for r in published if isinstance(r, StateReached)]
    assert len(steps) == len(set(steps)) == 4 * len(OrderState)
    assert consumer.committed(ORDERS, 0) == consumer.committed(ORDERS, 1) == 2
    assert consumer.committed(STATES, 0) == consumer.committed(STATES, 1) == 2 * len(OrderState)
    # Each order's duration is observed once, by whichever took its last step.
    registry = consumer.metrics.registry
    assert registry.get_sample_value("pedidos_order_duration_seconds_count") == 4
    assert (
        registry.get_sample_value("pedidos_steps_total", {"state": "Finalizado", "outcome": "done"})
        == 4
    )


class RefusingIndex(FakeIndex):
    """Refuses the ledger entry of one state for good, as Elasticsearch a mapping conflict."""

    def __init__(self, state: OrderState) -> None:
        super().__init__()
        self.refused = state

    def write_event(self, doc: dict[str, Any]) -> asyncio.Future[None]:
        if doc["state"] != self.refused.value:
            return super().write_event(doc)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_exception(PermanentIndexError(f"{self.refused.value} refused"))
        return future


def test_a_step_ahead_that_fails_fails_its_record_without_a_second_e_mail() -> None:
    """Taken by its record, a step whose ledger entry is refused dead-letters the record, its
    e-mail sent once. Taken ahead, its record must do the same, not take the step again (the
    ledger has no entry for it, so a second attempt would e-mail the customer again)."""
    consumer = Consumer(delays=NO_DELAY, index=RefusingIndex(OrderState.ENVIADO))
    order_id = consumer.order()

    async def scenario() -> None:
        await until(lambda: bool(consumer.publisher.on(DLQ)))
        await until(lambda: not consumer.source.queued)
        await asyncio.sleep(0.05)

    run(consumer.run(scenario))
    assert slugs(consumer.mailer) == [s.slug for s in STATES_IN_ORDER[:3]]
    [(_, key, _, headers)] = consumer.publisher.on(DLQ)
    assert key == order_id
    assert dict(headers)["pedidos-error"] == b"PermanentIndexError: Enviado refused"
    assert dict(headers)["pedidos-source"] == f"{STATES}/0/1".encode()
    # The dead-lettered record is done: committed with the rest.
    assert consumer.committed(STATES, 0) == 2


def test_a_step_ahead_that_failed_keeps_no_order_alive_while_its_record_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The walk keeps a failed step ahead's exception (up to 1,000) for its record, which may
    never be read here: that must not keep the step's frames, and so its order and e-mail."""
    # pytest keeps every log record with its exc_info, traceback and all; a service's handlers
    # write a record and drop it.
    monkeypatch.setattr(logging.getLogger("consumer.scheduling"), "disabled", True)
    consumer = Consumer(delays=NO_DELAY, index=RefusingIndex(OrderState.ENVIADO))
    consumer.publisher.feed = None  # the state records are taken but never read back
    order_id = consumer.order()

    async def scenario() -> None:
        await until(lambda: len(consumer.mailer.sent) == 3)  # Enviado e-mailed, then refused
        await until(lambda: not consumer.scheduler.ahead)

    run(consumer.run(scenario))
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, Order) and o.order_id == order_id]
    assert alive == []


class HeldStateMailer(FakeMailer):
    """Holds the e-mail of one state until `release()`."""

    def __init__(self, state: OrderState) -> None:
        super().__init__(delay_s=0)
        self.held = f".{state.slug}@"
        self.waiting = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def send_async(self, message: OutgoingEmail) -> None:
        if self.held in message.message_id:
            self.waiting.set()
            await self._released.wait()
        self.send(message)


def test_a_revoke_waits_for_a_step_taken_ahead_and_none_is_taken_on_a_partition_leaving() -> None:
    mailer = HeldStateMailer(OrderState.PREPARACION)
    consumer = Consumer(mailer, delays=NO_DELAY, commit_interval_s=60)
    consumer.publisher.feed = None  # the state records are taken but not read back: only the
    # step ahead is in progress on the partition, not its record's
    consumer.order()

    async def scenario() -> None:
        await asyncio.wait_for(mailer.waiting.wait(), 3)  # Preparación, taken ahead, e-mailing
        revoke = asyncio.create_task(consumer.source.revoke([(ORDERS, 0), (STATES, 0)]))
        await asyncio.sleep(0.05)
        assert not revoke.done()  # the step ahead is not left half done
        mailer.release()
        await asyncio.wait_for(revoke, 2)
        await asyncio.sleep(0.05)

    run(consumer.run(scenario))
    # Preparación finished before the partitions left; Enviado was not started on them.
    assert slugs(mailer) == [OrderState.PROCESANDO.slug, OrderState.PREPARACION.slug]
    assert len(consumer.index.events) == 2


def test_while_tracing_each_step_waits_for_its_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trace has one process span per record, the step's spans under it: a step taken ahead
    of its record would have none."""
    monkeypatch.setattr(tracing, "enabled", lambda: True)
    consumer = Consumer(delays=NO_DELAY, unanswered=frozenset({STATES}), broker_patience_s=0.05)
    consumer.order()

    async def scenario() -> None:
        await until(lambda: len(consumer.mailer.sent) == 1)
        await asyncio.sleep(0.05)

    run(consumer.run(scenario))
    assert slugs(consumer.mailer) == [OrderState.PROCESANDO.slug]


def test_an_order_alone_hurries_only_its_last_current_state() -> None:
    """Alone, a step sends the order's current state at once instead of after its batching
    interval; a step whose next one is taken ahead need not: that one writes it again within
    milliseconds (the writes are coalesced per order), so only the last state is hurried, and
    beside its ledger entry (nothing follows that the ledger's answer would hold)."""
    consumer = Consumer(delays=NO_DELAY, index=FakeIndex(write_delay_s=0.001))
    order_id = consumer.order()

    async def scenario() -> None:
        await until(lambda: consumer.finished(order_id))

    run(consumer.run(scenario))
    assert consumer.index.hurried == 1
    assert consumer.index.hurried_pending == [1]  # Finalizado's ledger entry not yet stored
    assert len(consumer.index.events) == len(OrderState)


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the consumer's scheduler decodes, in order: "order", or a state record's state."""
    seen: list[str] = []
    real_decode = scheduling.decode

    def counting_decode(value: bytes | None, headers: Any = None) -> Any:
        record = real_decode(value, headers)
        seen.append(record.state.value if isinstance(record, StateReached) else "order")
        return record

    monkeypatch.setattr(scheduling, "decode", counting_decode)
    return seen


def test_a_record_of_a_step_already_taken_is_done_without_decoding_it(decoded: list[str]) -> None:
    """Its header names the state it records: a record whose next step this process already
    took is marked done at once, counted and committed as if its task had found the step done.
    Here the state records reach the consumer only after the whole walk (taken ahead)."""
    consumer = Consumer(delays=NO_DELAY, max_open_orders=10)
    consumer.publisher.feed = None
    order_id = consumer.order()

    async def scenario() -> None:
        await until(lambda: consumer.finished(order_id))
        await until(lambda: len(consumer.publisher.on(STATES)) == len(OrderState))
        for _, key, value, headers in consumer.publisher.on(STATES):
            consumer.source.add(STATES, 0, value, key, headers)
        await until(lambda: consumer.committed(STATES, 0) == len(OrderState))

    run(consumer.run(scenario))
    # The order's own record was decoded, and Finalizado's (which leads nowhere); the four
    # records whose steps were taken were not.
    assert decoded == ["order", OrderState.FINALIZADO.value]
    registry = consumer.metrics.registry
    for state in OrderState:
        assert (
            registry.get_sample_value(
                "pedidos_steps_total", {"state": state.value, "outcome": "done"}
            )
            == 1
        ), state
    assert consumer.admission.open_orders == 0  # Finalizado's trigger closed the walk
    assert len(consumer.mailer.sent) == len(OrderState)


def test_with_other_orders_in_progress_steps_wait_for_their_records() -> None:
    """Steps are taken ahead only for an order alone: under load the records' fetches start the
    next steps together, and taking them ahead cost an end-to-end run 4-20 % of its rate."""
    mailer = HeldMailer("lento@example.cl")
    consumer = Consumer(
        mailer, delays=NO_DELAY, unanswered=frozenset({STATES}), broker_patience_s=0.05
    )
    consumer.order(email="lento@example.cl")  # in progress (e-mailing) throughout
    consumer.order(email="rapido@example.cl")

    async def scenario() -> None:
        await until(lambda: len(mailer.sent) == 1 and bool(mailer.waiting))
        await asyncio.sleep(0.05)  # no step of the second order is taken ahead
        mailer.release()
        await until(lambda: len(mailer.sent) == 2)
        await asyncio.sleep(0.05)  # nor of the first: the second's step awaits its broker

    run(consumer.run(scenario))
    assert sorted(m.recipient for m in mailer.sent) == ["lento@example.cl", "rapido@example.cl"]
    assert slugs(mailer) == [OrderState.PROCESANDO.slug] * 2


def test_a_record_read_while_its_step_runs_ahead_is_done_when_the_step_ends(
    decoded: list[str],
) -> None:
    """An order alone's record usually comes back while the step it triggers, taken ahead, is
    still e-mailing: it is not decoded nor given a task, and is committed once the step ends."""
    mailer = HeldStateMailer(OrderState.PREPARACION)
    consumer = Consumer(mailer, delays=NO_DELAY)
    consumer.publisher.feed = None
    order_id = consumer.order()

    def read_back(count: int) -> None:
        for _, key, value, headers in consumer.publisher.on(STATES)[:count]:
            consumer.source.add(STATES, 0, value, key, headers)

    async def scenario() -> None:
        await asyncio.wait_for(mailer.waiting.wait(), 3)  # Preparación, ahead, held
        await until(lambda: len(consumer.publisher.on(STATES)) == 1)
        read_back(1)  # "Procesando reached": its step is the one held
        await until(lambda: not consumer.source.queued)
        await asyncio.sleep(0.05)
        assert consumer.committed(STATES, 0) is None  # not before its step ends
        assert consumer.loop.in_flight == 0  # no task waits for it
        mailer.release()
        await until(lambda: consumer.committed(STATES, 0) == 1)
        await until(lambda: consumer.finished(order_id))

    run(consumer.run(scenario))
    assert decoded == ["order"]
    assert slugs(mailer) == [s.slug for s in OrderState]
    assert (
        consumer.metrics.registry.get_sample_value(
            "pedidos_steps_total", {"state": "Preparación", "outcome": "done"}
        )
        == 1
    )
