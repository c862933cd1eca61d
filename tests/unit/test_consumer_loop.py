"""The consumer loop's invariants, with an in-memory record source and a fake clock.

Whole walks run in milliseconds: the stage waits go through the fake clock, and the state
records the consumer publishes come back to it through the fake source, as through Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from consumer import stuck
from consumer.admission import Admission
from consumer.assignments import Assignments
from consumer.dead_letters import DeadLetters
from consumer.loop import ConsumerLoop
from consumer.metrics import ConsumerMetrics
from consumer.scheduling import StepScheduler
from devkit.orders import make_details
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.kafka.record_source import ConsumedRecord
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.ports import MailOutageError, OutgoingEmail, PublishError, TransientMailError
from pedidos.runtime.retry import Backoff
from pedidos.services.mail_outage import MailOutage
from pedidos.services.order_walk import OrderWalk, StageDelays
from pedidos.wire.records import ORDER_SCHEMA, encode_order_accepted, header_value, headers_for
from tests.unit.fakes import T0, FakeClock, FakeIndex, FakeMailer, FakePublisher, FakeRecordSource

ORDERS, STATES, DLQ = "Pedidos", "Pedidos.estados", "Pedidos.dlq"
PARTITIONS = [(ORDERS, 0), (ORDERS, 1), (STATES, 0), (STATES, 1)]
FAST = Backoff(initial_s=0.001, max_s=0.002)


class HeldMailer(FakeMailer):
    """Holds the e-mails to `held` recipients until `release()`."""

    def __init__(self, *held: str, **kwargs: Any) -> None:
        super().__init__(delay_s=0, **kwargs)
        self.held = set(held)
        self.waiting: list[str] = []
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def send_async(self, message: OutgoingEmail) -> None:
        if message.recipient in self.held and not self._released.is_set():
            self.waiting.append(message.recipient)
            await self._released.wait()
        self.send(message)


class Consumer:
    """The consumer as consumer/app.py wires it, over fakes."""

    def __init__(
        self,
        mailer: FakeMailer | None = None,
        *,
        max_in_flight: int = 1000,
        max_open_orders: int | None = None,
        commit_interval_s: float = 0.005,
        revoke_wait_s: float = 5.0,
        unrecorded_sends: int = 4,
        close_limit_s: float = 5.0,
        broker_patience_s: float = 2.0,
        grace_s: float = 1.0,
        source: type[FakeRecordSource] = FakeRecordSource,
        unanswered: frozenset[str] = frozenset(),
        index: FakeIndex | None = None,
        delays: StageDelays | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.source = source([ORDERS, STATES])
        self.publisher = FakePublisher(feed=self.source, unanswered=unanswered)
        self.mailer = mailer or FakeMailer(delay_s=0)
        self.index = index or FakeIndex()
        self.grace_s = grace_s
        outage = MailOutage()
        dead_letters = DeadLetters(self.publisher, DLQ, FAST)
        walk = OrderWalk(
            mailer=self.mailer,
            index=self.index,
            publisher=self.publisher,
            renderer=EmailRenderer("Tienda <ventas@tienda.cl>"),
            states_topic=STATES,
            delays=delays or StageDelays(1.0, 2.0, random.Random(7)),
            dead_letter=dead_letters.for_walk,
            backoff=FAST,
            clock=self.clock,
            mail_outage=outage,
            unrecorded_sends=unrecorded_sends,
        )
        self.assignments = Assignments(revoke_wait_s)
        self.admission = Admission(ORDERS, max_open_orders, outage)
        self.metrics = ConsumerMetrics()
        self.scheduler = scheduler = StepScheduler(
            walk,
            self.assignments,
            self.admission,
            dead_letters,
            clock=self.clock,
            sleep=self.clock.sleep,
            metrics=self.metrics,
            states_topic=STATES,
        )
        self.loop = ConsumerLoop(
            self.source,
            scheduler,
            self.assignments,
            self.admission,
            max_in_flight=max_in_flight,
            commit_interval_s=commit_interval_s,
            close_limit_s=close_limit_s,
            broker_patience_s=broker_patience_s,
        )
        self.stop = asyncio.Event()
        self._orders = 0

    def order(self, partition: int = 0, email: str = "cliente@example.cl") -> str:
        """Queues a new order on `Pedidos`; returns its id."""
        self._orders += 1
        order_id = f"00000000-0000-4000-8000-{self._orders:012d}"
        order = Order(order_id, make_details(customer_email=email), T0)
        headers = headers_for(ORDER_SCHEMA, f"corr-{self._orders}")
        self.source.add(ORDERS, partition, encode_order_accepted(order), order_id, headers)
        return order_id

    def state(self, order_id: str) -> str | None:
        doc = self.index.orders.get(order_id)
        return None if doc is None else str(doc["state"])

    def finished(self, *order_ids: str) -> bool:
        return all(self.state(o) == OrderState.FINALIZADO.value for o in order_ids)

    def committed(self, topic: str, partition: int) -> int | None:
        return self.source.committed.get((topic, partition))

    async def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.create_task(self.loop.run(self.stop, grace_s=self.grace_s))
        await until(lambda: self.source.started)
        await self.source.assign(PARTITIONS)
        try:
            await scenario()
        finally:
            self.stop.set()
            await asyncio.wait_for(task, 5)


async def until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 10))


def test_orders_walk_to_the_end_on_the_injected_clock_and_every_offset_is_committed() -> None:
    consumer = Consumer()
    ids = [consumer.order(partition=i % 2) for i in range(4)]

    def all_read() -> bool:  # the Finalizado records too, which lead nowhere
        return not consumer.source.queued

    async def scenario() -> None:
        await until(lambda: consumer.finished(*ids))
        await until(lambda: len(consumer.publisher.on(STATES)) == 4 * len(OrderState))
        await until(all_read)

    started = time.monotonic()
    run(consumer.run(scenario))
    assert time.monotonic() - started < 2  # four whole walks with 1-2 s stages each
    assert len(consumer.mailer.sent) == 4 * len(OrderState)
    # Every stage wait went through the fake clock: drawn in [1, 2] s, none capped at 60 s.
    assert consumer.clock.slept
    assert all(0 < s <= 2.0 for s in consumer.clock.slept)
    # Shut down cleanly: everything read was committed, state records included.
    assert consumer.committed(ORDERS, 0) == consumer.committed(ORDERS, 1) == 2
    assert consumer.committed(STATES, 0) == consumer.committed(STATES, 1) == 2 * len(OrderState)
    assert consumer.source.closed


def test_only_a_gap_free_prefix_is_committed() -> None:
    mailer = HeldMailer("lento@example.cl")
    consumer = Consumer(mailer)
    slow = consumer.order(email="lento@example.cl")  # offset 0
    fast = [consumer.order(), consumer.order()]  # offsets 1 and 2, same partition

    async def scenario() -> None:
        await until(lambda: consumer.finished(*fast))
        await until(lambda: consumer.committed(STATES, 0) is not None)  # commits are running
        await asyncio.sleep(0.03)
        assert consumer.committed(ORDERS, 0) is None  # 1 and 2 are done, 0 is not
        mailer.release()
        await until(lambda: consumer.committed(ORDERS, 0) == 3)
        await until(lambda: consumer.finished(slow))

    run(consumer.run(scenario))


def test_a_revoke_waits_for_steps_doing_effects_and_commits_them() -> None:
    mailer = HeldMailer("lento@example.cl")
    consumer = Consumer(mailer, commit_interval_s=60)
    consumer.order(email="lento@example.cl")

    async def scenario() -> None:
        await until(lambda: bool(mailer.waiting))  # the step is e-mailing
        revoke = asyncio.create_task(consumer.source.revoke([(ORDERS, 0), (STATES, 0)]))
        await asyncio.sleep(0.05)
        assert not revoke.done()  # the partition is not given up half done
        mailer.release()
        await asyncio.wait_for(revoke, 2)
        assert len(mailer.sent) == 1
        assert consumer.committed(ORDERS, 0) == 1  # finished before the partition left

    run(consumer.run(scenario))


def test_stopping_hands_back_steps_not_yet_e_mailing_and_finishes_those_that_are() -> None:
    """One send slot: order A is e-mailing (held), order B waits for the slot. Stopping must not
    let B start its e-mail during the grace period: a send cut short by the grace's end before
    its ledger entry is written is e-mailed again by the partition's next owner."""
    mailer = HeldMailer("lento@example.cl")
    consumer = Consumer(mailer, commit_interval_s=60, unrecorded_sends=1)
    consumer.order(email="lento@example.cl")
    consumer.order(email="siguiente@example.cl")

    async def scenario() -> None:
        await until(lambda: bool(mailer.waiting))  # A is e-mailing, B queued for the slot
        await asyncio.sleep(0.01)
        consumer.stop.set()
        await asyncio.sleep(0.05)
        mailer.release()

    run(consumer.run(scenario))
    assert [m.recipient for m in mailer.sent] == ["lento@example.cl"]
    assert consumer.index.events  # A's e-mail is in the ledger
    assert consumer.committed(ORDERS, 0) == 1  # A done and committed; B left for the next owner


class SilentBrokerSource(FakeRecordSource):
    """A broker up but answering nothing: leaving the group never ends, as librdkafka's close()
    waits for it."""

    async def close(self) -> None:
        await asyncio.Event().wait()


def test_a_close_that_never_ends_is_given_up_after_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = Consumer(close_limit_s=0.2, source=SilentBrokerSource)
    order_id = consumer.order()
    stopped_after: list[float] = []

    async def scenario() -> None:
        await until(lambda: consumer.finished(order_id))
        began = time.monotonic()
        consumer.stop.set()
        await until(lambda: consumer.loop.in_flight == 0 and "did not finish" in caplog.text)
        stopped_after.append(time.monotonic() - began)

    with caplog.at_level(logging.WARNING, logger="consumer.loop"):
        run(consumer.run(scenario))  # fails unless the loop's run() returns
    assert 0.2 <= stopped_after[0] < 2.0
    assert consumer.committed(ORDERS, 0) == 1  # the final commit came before the close
    assert "the final commit and close did not finish in 0.2 s" in caplog.text


class StuckThreadSource(FakeRecordSource):
    """A consumer thread stuck in one librdkafka call once an order has walked: the fetch after
    that never returns, nor do the commits queued behind it."""

    def __init__(self, topics: list[str]) -> None:
        super().__init__(topics)
        self.hang = False
        self.hung_since: float | None = None

    async def fetch(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        if self.hang:
            self.hung_since = time.monotonic()
            await asyncio.Event().wait()
        return await super().fetch(max_records, timeout_s)

    async def commit(self, offsets: list[tuple[str, int, int]], wait: bool = True) -> None:
        if self.hung_since is not None:
            await asyncio.Event().wait()
        await super().commit(offsets, wait)

    def busy(self) -> tuple[str, float] | None:
        if self.hung_since is None:
            return None
        return "consume", time.monotonic() - self.hung_since


def test_a_stuck_source_thread_is_given_up_and_the_loop_stops_with_its_steps_done(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(stuck, "STUCK_LIMIT_S", 0.3)
    monkeypatch.setattr(stuck, "CHECK_EVERY_S", 0.05)
    consumer = Consumer(close_limit_s=0.2, source=StuckThreadSource)
    source = consumer.source
    assert isinstance(source, StuckThreadSource)
    first = consumer.order()

    async def scenario() -> None:
        await until(lambda: consumer.finished(first))
        source.hang = True
        # Nobody sets stop: the loop sets it once the fetch is past the limit.
        await until(lambda: consumer.stop.is_set(), 5)

    with caplog.at_level(logging.WARNING):
        run(consumer.run(scenario))
    assert consumer.loop.stuck is not None
    assert consumer.loop.stuck.startswith("the Kafka consumer thread has been in consume() for")
    assert "librdkafka has left the group" in caplog.text
    assert "did not finish in 0.2 s" in caplog.text  # the final commit, queued behind it


def test_a_stop_hands_back_steps_waiting_only_for_the_broker_without_a_second_e_mail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A step e-mailed and recorded whose state record the broker never takes is handed back
    after the patience, not held for the whole grace; left uncommitted, it is redone by the next
    owner from the ledger, without a second e-mail."""
    index = FakeIndex()
    consumer = Consumer(
        grace_s=3.0, broker_patience_s=0.1, unanswered=frozenset({STATES}), index=index
    )
    order_id = consumer.order()
    stopped_after: list[float] = []

    async def scenario() -> None:
        await until(lambda: bool(consumer.mailer.sent) and bool(index.events))
        began = time.monotonic()
        consumer.stop.set()
        await until(lambda: consumer.loop.in_flight == 0, timeout_s=5)
        stopped_after.append(time.monotonic() - began)

    with caplog.at_level(logging.WARNING, logger="consumer.loop"):
        run(consumer.run(scenario))
    assert 0.1 <= stopped_after[0] < 1.0  # the patience, not the 3 s grace
    assert "handing back 1 steps waiting over 0.1 s for the broker" in caplog.text
    assert consumer.committed(ORDERS, 0) is None  # left for the next owner
    assert len(consumer.mailer.sent) == 1

    # The next owner, with the broker back, reads the order again: the ledger has its first
    # step, so that step is published without e-mailing, and the walk goes on.
    next_owner = Consumer(mailer=consumer.mailer, index=index)
    next_owner.order()  # the same record: the same id, on the same partition

    async def redo() -> None:
        await until(lambda: next_owner.finished(order_id))

    run(next_owner.run(redo))
    states = [m.message_id for m in consumer.mailer.sent]
    assert len(states) == len(set(states)) == len(OrderState)  # one e-mail per state


def test_lost_partitions_are_never_committed() -> None:
    consumer = Consumer(commit_interval_s=60)
    order_id = consumer.order()

    async def scenario() -> None:
        await until(lambda: consumer.state(order_id) is not None)
        await consumer.source.revoke([(ORDERS, 0), (STATES, 0)], lost=True)
        assert consumer.source.commits == []

    run(consumer.run(scenario))
    # Nor at shutdown: they are not ours any more.
    assert (ORDERS, 0) not in consumer.source.committed


def test_a_step_whose_partition_was_handed_over_is_not_committed() -> None:
    mailer = FakeMailer(always=TransientMailError("421 try later"), delay_s=0)
    consumer = Consumer(mailer, revoke_wait_s=5)
    order_id = consumer.order()

    async def scenario() -> None:
        await until(lambda: mailer.attempts >= 2)  # retrying its e-mail
        started = time.monotonic()
        await consumer.source.revoke([(ORDERS, 0), (STATES, 0)])
        # Handed back at its next attempt: the revoke did not wait out its 5 s.
        assert time.monotonic() - started < 1
        attempts = mailer.attempts
        await asyncio.sleep(0.02)
        assert mailer.attempts == attempts  # the step stopped trying

    run(consumer.run(scenario))
    assert consumer.source.committed.get((ORDERS, 0)) is None  # the next owner redoes it
    assert consumer.index.events == {}
    assert consumer.state(order_id) is None


def test_a_poison_record_is_dead_lettered_with_its_source_and_committed() -> None:
    consumer = Consumer()
    consumer.source.add(ORDERS, 0, b"not json", "some-key")
    order_id = consumer.order()

    async def scenario() -> None:
        await until(lambda: consumer.finished(order_id))
        await until(lambda: consumer.committed(ORDERS, 0) == 2)

    run(consumer.run(scenario))
    ((topic, key, value, headers),) = consumer.publisher.on(DLQ)
    assert (topic, key, value) == (DLQ, "some-key", b"not json")
    assert header_value(headers, "pedidos-dlq-kind") == "record"
    assert header_value(headers, "pedidos-source") == "Pedidos/0/0"
    assert (header_value(headers, "pedidos-error") or "").startswith("PoisonRecord:")


def test_admission_pauses_only_new_orders_and_resumes_them() -> None:
    mailer = HeldMailer("cliente@example.cl")
    consumer = Consumer(mailer, max_open_orders=20)
    ids = [consumer.order(partition=i % 2) for i in range(60)]

    async def scenario() -> None:
        await until(lambda: consumer.source.paused == {ORDERS})
        # The first fetch admits up to the bound, then new orders wait on Kafka.
        assert consumer.admission.open_orders == 20
        assert sum(1 for r in consumer.source.queued if r.topic == ORDERS) == 40
        mailer.release()
        await until(lambda: consumer.finished(*ids))
        await until(lambda: consumer.source.paused == frozenset())

    run(consumer.run(scenario))
    # Only `Pedidos` was ever paused: the states of started orders kept flowing.
    assert set(consumer.source.pauses) == {frozenset({ORDERS}), frozenset()}
    assert len(consumer.source.pauses) >= 4  # paused, resumed, paused again...


def test_admission_resumes_at_80_percent_of_the_bound() -> None:
    admission = Admission(ORDERS, max_open_orders=5)
    topics = frozenset({ORDERS, STATES})
    for i in range(5):
        admission.admitted(ORDERS, f"o{i}")
    admission.admitted(STATES, "o9")  # a state record opens no order
    assert admission.update(10, topics) == {ORDERS}
    admission.closed("o0")
    assert admission.update(10, topics) is None  # 4 open: still paused
    admission.closed("o1")
    assert admission.update(10, topics) == frozenset()
    # No free place for a record: everything waits.
    assert admission.update(0, topics) == topics


def test_a_revoke_forgets_the_open_orders_which_may_now_finish_elsewhere() -> None:
    admission = Admission(ORDERS, max_open_orders=2)
    topics = frozenset({ORDERS, STATES})
    admission.admitted(ORDERS, "o1")
    admission.admitted(ORDERS, "o2")
    assert admission.update(10, topics) == {ORDERS}
    admission.forget()  # from the consumer thread; the loop applies it
    assert admission.update(10, topics) == frozenset()
    assert admission.open_orders == 0


def test_a_mail_outage_pauses_all_intake_until_the_server_answers() -> None:
    mailer = FakeMailer(always=MailOutageError("mail server unreachable"), delay_s=0)
    consumer = Consumer(mailer)
    first = consumer.order()

    async def scenario() -> None:
        await until(lambda: consumer.source.paused == {ORDERS, STATES})
        later = consumer.order(partition=1)
        await asyncio.sleep(0.02)
        assert [r.key for r in consumer.source.queued] == [later.encode()]  # not fetched
        mailer.always = None
        await until(lambda: consumer.finished(first, later))
        assert consumer.source.paused == frozenset()

    run(consumer.run(scenario))


def test_a_dead_letter_is_retried_until_the_broker_takes_it() -> None:
    publisher = FakePublisher(PublishError("broker down"), PublishError("broker down"))
    dead_letters = DeadLetters(publisher, DLQ, FAST)
    run(dead_letters.send("record", "k", b"v", "why", "Pedidos/1/7", [("correlation-id", b"c")]))
    ((topic, key, value, headers),) = publisher.records
    assert (topic, key, value) == (DLQ, "k", b"v")
    assert headers == [
        ("correlation-id", b"c"),
        ("pedidos-dlq-kind", b"record"),
        ("pedidos-error", b"why"),
        ("pedidos-source", b"Pedidos/1/7"),
    ]
