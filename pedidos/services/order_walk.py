"""An order's walk, one step at a time: which state a record leads to, when, and the step itself.

A record triggers one step: the accepted order enters `Procesando` at once; "X reached S" makes X
enter the state after S once S's stage has ended (`stage_ends_at`, drawn here when S is entered
and carried in the record, so a restart does not restart the wait); `Finalizado` leads nowhere.

A step enters the state, e-mails the customer, indexes it and records it on Kafka. Every effect
is idempotent per (order, state): the event document in Elasticsearch is the ledger that says
the e-mail was handled, the documents have deterministic ids, and a duplicate state record on
Kafka is recognised downstream. See the README, "Delivery guarantees".

The ledger is read before a step unless this process published the step's trigger itself,
after doing the previous step for the first time (the ledger had no entry for it), under the
same assignment of its partition that it now reads it under: no earlier copy of that record
exists, no other consumer can have read this one, and this one would have remembered the step
had it taken it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cachetools import LRUCache

from pedidos.domain.order import Order, utc_now
from pedidos.domain.states import ALL_STATES, FIRST_STATE, OrderState
from pedidos.ports import (
    Mailer,
    MailOutageError,
    OrderIndex,
    OutgoingEmail,
    PermanentMailError,
    Publisher,
    PublishError,
    Renderer,
    TransientMailError,
)
from pedidos.runtime.event_loop import BoundLoop
from pedidos.runtime.logs import mask_email
from pedidos.runtime.retry import Backoff, retry_async
from pedidos.services.mail_outage import MailOutage
from pedidos.wire.records import (
    OrderAccepted,
    Record,
    StateReached,
    encode_state_reached,
    state_headers,
)
from pedidos.wire.search_documents import event_document, order_document
from pedidos.wire.timestamps import stamped

log = logging.getLogger(__name__)

EMAIL_SENT = "sent"
EMAIL_REJECTED = "rejected"
# A stage ending further away than this is treated as due now (clock skew, bad data).
MAX_STAGE_WAIT_S = 60.0
DeadLetter = Callable[[str, str, bytes, str], Awaitable[None]]
# Told that `order` may enter `state` here now, before its trigger comes back: (order, state,
# correlation id, partition, lease). See `OrderWalk.enter`.
StepDue = Callable[[Order, OrderState, str, int, object], None]


@dataclass(frozen=True, slots=True)
class NextStep:
    """`order` (as last recorded) is to enter `state` once `due` has passed (None: at once)."""

    order: Order
    state: OrderState
    due: datetime | None
    correlation_id: str

    def wait_s(self, now: datetime) -> float:
        """Seconds until the step is due, 0 if it already is, never more than MAX_STAGE_WAIT_S."""
        if self.due is None:
            return 0.0
        return min(max((self.due - now).total_seconds(), 0.0), MAX_STAGE_WAIT_S)


def next_step(record: Record) -> NextStep | None:
    """The step `record` triggers; None once the order has reached its final state."""
    if isinstance(record, OrderAccepted):
        return NextStep(record.order, FIRST_STATE, None, record.correlation_id)
    if record.state.is_final:
        return None
    return NextStep(record.order, record.state.next(), record.stage_ends_at, record.correlation_id)


@dataclass
class StageDelays:
    """The simulated work in each state, drawn uniformly from [min_s, max_s]."""

    min_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random)

    def draw(self, state: OrderState) -> timedelta:
        if state.is_final or self.max_s <= 0:
            return timedelta(0)
        return timedelta(seconds=self.rng.uniform(self.min_s, self.max_s))


class StepHandedBack(Exception):
    """The step's partition went to another consumer before its e-mail was sent: it is left
    undone here (not committed) for the next owner to do."""


class OrderWalk:
    def __init__(
        self,
        *,
        mailer: Mailer,
        index: OrderIndex,
        publisher: Publisher,
        renderer: Renderer,
        states_topic: str,
        delays: StageDelays,
        dead_letter: DeadLetter,
        backoff: Backoff | None = None,
        clock: Callable[[], datetime] = utc_now,
        remembered_steps: int = 20_000,
        unrecorded_sends: int = 4,
        mail_outage: MailOutage | None = None,
    ) -> None:
        """`remembered_steps` bounds both memories below; forgetting costs only a ledger read."""
        self._mailer = mailer
        self._index = index
        self._publisher = publisher
        self._renderer = renderer
        self._states_topic = states_topic
        self._delays = delays
        self._dead_letter = dead_letter
        self._backoff = backoff or Backoff()
        self._mail_outage = mail_outage or MailOutage()
        self._clock = clock
        # Steps this process completed: a duplicate trigger is skipped without a lookup.
        self._completed: LRUCache[tuple[str, OrderState], bool] = LRUCache(remembered_steps)
        self._running: dict[tuple[str, OrderState], asyncio.Future[None]] = {}
        # A step taken ahead of its trigger that failed: the trigger, once read, fails the same
        # way (dead-lettered) instead of taking the step again, as if it had taken it itself.
        self._failed_ahead: LRUCache[tuple[str, OrderState], BaseException] = LRUCache(1000)
        self._running_ahead: set[tuple[str, OrderState]] = set()
        # The next step of each state record this process published: (order, state) ->
        # (partition, lease) it went to. Taken once, by the record it was published as.
        self._own_triggers: LRUCache[tuple[str, OrderState], tuple[int, object]] = LRUCache(
            remembered_steps
        )
        # A slot is held from the SMTP send until its ledger entry is stored, so a crash can
        # repeat at most this many e-mails (those accepted by the server but not yet recorded).
        self._send_slots = asyncio.Semaphore(unrecorded_sends)
        self._unrecorded_sends = unrecorded_sends
        self._awaiting_ledger = 0  # sends done whose ledger entry is being written
        # Steps e-mailed and recorded in the ledger that wait only for the broker to take their
        # state record, with the loop time they began: see `waiting_on_broker`.
        self._publishing: dict[asyncio.Task[Any] | None, float] = {}
        self._loop = BoundLoop()

    async def enter(
        self,
        order: Order,
        state: OrderState,
        correlation_id: str,
        partition: int | None = None,
        still_ours: Callable[[], bool] = lambda: True,
        lease: object = None,
        then: StepDue | None = None,
        ahead: bool = False,
    ) -> None:
        """Move `order` (as last recorded) into `state` with all effects, exactly once in effect.

        `partition` is where the triggering record was: the state record goes to the same
        partition of the co-partitioned states topic, so an order's whole walk stays with one
        consumer even after partitions are added (the key's hash would move it mid-walk, and a
        step redone after the rebalance could then run at two consumers at once).

        `lease` names the assignment the trigger was read under: equal for the partitions of
        both topics assigned together, new whenever a partition is assigned again (None:
        unknown). A trigger this walk published, after first doing the step before it, with the
        same partition and lease needs no ledger read: the partition was this consumer's
        throughout, from before the record existed until now.

        `then` is told when the next step is due at once (no stage delay) and may be taken here
        before its trigger comes back: this step was first done here, its state record is about
        to be published to `partition` under `lease`, so no other consumer can take the next
        step while that partition stays ours. It is taken with `ahead` true; the trigger then
        finds it running or done (and fails as it failed), so an order alone does not wait for
        the broker's acknowledgement and the record's round trip at every step."""
        key = (order.order_id, state)
        if key in self._completed:
            return
        running = self._running.get(key)
        if running is not None:
            # The same step triggered twice at once (a duplicate record, or the trigger of a
            # step taken ahead): let the first finish.
            await asyncio.shield(running)
            return
        failed = self._failed_ahead.pop(key, None)
        if failed is not None:
            raise failed
        future: asyncio.Future[None] = self._loop().create_future()
        self._running[key] = future
        if ahead:
            self._running_ahead.add(key)
        try:
            await self._enter(order, state, correlation_id, partition, still_ours, lease, then)
            self._completed[key] = True
            future.set_result(None)
        except BaseException as exc:
            if ahead and not isinstance(exc, StepHandedBack | asyncio.CancelledError):
                self._failed_ahead[key] = exc
            future.set_exception(exc)
            future.exception()  # a waiter may not exist; do not warn
            raise
        finally:
            del self._running[key]
            self._running_ahead.discard(key)

    async def _enter(
        self,
        order: Order,
        state: OrderState,
        correlation_id: str,
        partition: int | None,
        still_ours: Callable[[], bool],
        lease: object,
        then: StepDue | None,
    ) -> None:
        published_here = self._own_triggers.pop((order.order_id, state), None)
        if lease is not None and published_here == (partition, lease):
            recorded = None
        else:
            lookup = self._index.recorded_event(order.order_id, state.value)
            self._hurry_if_alone(self._index.hurry_lookups)
            recorded = await lookup
        stage = self._delays.draw(state)
        # The next step may be taken here at once (`then`, below), and then writes the order's
        # current state again within milliseconds: an order alone need not hurry this one's.
        next_at_once = (
            then is not None
            and partition is not None
            and lease is not None
            and not state.is_final
            and not stage
        )
        if recorded is not None:
            # An earlier attempt e-mailed and indexed this step; its Kafka record may be missing.
            order.enter(state, datetime.fromisoformat(recorded["@timestamp"]))
            # A copy of the order published again (another replica, a restart) has its own
            # acceptance time; the one already recorded stands.
            order.accepted_at = datetime.fromisoformat(recorded["accepted_at"])
            email_status = str(recorded["email_status"])
            order_written = self._index.write_order(order_document(order))
            self._hurry_if_alone(self._index.hurry)
        else:
            # Stamped: the step taken ahead walks on with this very value, not one read back
            # from the record (which keeps its text), and writes it at every later state.
            order.enter(state, stamped(self._clock()))
            email_status, order_written = await self._notify_and_record(
                order, state, correlation_id, still_ours, hurry_current=not next_at_once
            )
        event = StateReached(
            order=order,
            state=state,
            stage_ends_at=order.reached[state] + stage,
            email_status=email_status,
            correlation_id=correlation_id,
        )
        if (
            next_at_once
            and recorded is None
            and then is not None
            and partition is not None
            and self._alone()
        ):
            # Only after a step first done here, as below, and for an order alone: under load,
            # steps taken ahead cost more than the records' round trips they save (an end-to-end
            # run lost 4-20 % of its rate), and the records' fetches start the next steps
            # together. The next step walks a copy: this step's record is yet to be encoded
            # from `order`.
            walker = Order(order.order_id, order.details, order.accepted_at, dict(order.reached))
            walker.trace_id = order.trace_id
            then(walker, state.next(), correlation_id, partition, lease)
        # Only a step first done here vouches for its record: a step redone (found in the
        # ledger) may have been walked on from an earlier copy of its record, so the next step
        # must read the ledger (a replayed dead letter, a restart's redelivery).
        loop = self._loop()
        task = asyncio.current_task(loop)
        self._publishing[task] = loop.time()
        try:
            await self._publish_state(event, partition, lease if recorded is None else None)
        finally:
            del self._publishing[task]
        await order_written
        log.info(
            "order state reached",
            extra={
                "order_id": order.order_id,
                "state": state.value,
                "email": email_status,
                "customer": mask_email(order.details.customer_email),
            },
        )

    def done(self, order_id: str, state: OrderState) -> bool:
        """This process took the step, with every effect (a trigger of it needs nothing)."""
        return (order_id, state) in self._completed

    def running_ahead(self, order_id: str, state: OrderState) -> asyncio.Future[None] | None:
        """The outcome to come of the step, while it is being taken here ahead of its trigger
        (None otherwise): what the trigger, once read, would wait for."""
        key = (order_id, state)
        return self._running.get(key) if key in self._running_ahead else None

    def waiting_on_broker(self, for_at_least_s: float) -> list[asyncio.Task[Any]]:
        """The steps that have waited `for_at_least_s` for the broker to take their state record.
        Their e-mail and ledger entry are done, so one cancelled and left uncommitted costs the
        partition's next owner a ledger read and a publish, never a second e-mail (a stop hands
        them back rather than hold its grace for a broker that is gone)."""
        since = self._loop().time() - for_at_least_s
        return [t for t, began in self._publishing.items() if t is not None and began <= since]

    def _hurry_if_alone(self, hurry: Callable[[], None], hurried: list[bool] | None = None) -> None:
        """With no other order's step in progress here, nothing will join what this step asked
        of the index: `hurry` (the index's for that request) sends it now instead of waiting
        out the batching interval (an order alone would wait at every step). With others in
        progress it waits for them: at a steady 40 orders/s the steps overlap, and batching
        them is what keeps a request per step away.

        Judged once the steps already scheduled have started: the first record of a fetch
        runs before the others of its batch have begun theirs, and would count as alone.
        `hurried` gets True if it hurried."""
        self._loop().call_soon(self._hurry_while_alone, hurry, hurried)

    def _alone(self) -> bool:
        """No other order has a step in progress here. Steps of one order overlap: the next
        one starts as the record that triggers it comes back, which can be before the broker's
        acknowledgement of that record, or the current state's write, ended the step before."""
        running = self._running
        if len(running) <= 1:
            return True
        return len(running) <= len(ALL_STATES) and len({o for o, _ in running}) == 1

    def _hurry_while_alone(self, hurry: Callable[[], None], hurried: list[bool] | None) -> None:
        if self._alone():
            hurry()
            if hurried is not None:
                hurried.append(True)

    async def _publish_state(
        self, event: StateReached, partition: int | None, lease: object
    ) -> None:
        """Publishes "X reached S" until the broker acknowledges it."""
        order_id = event.order.order_id
        value = encode_state_reached(event)
        headers = state_headers(event.state, event.correlation_id)
        pinned = [partition]
        # Remembered before the record exists: it may be read back before its ack arrives.
        next_step_key = (order_id, event.state.next()) if not event.state.is_final else None
        if next_step_key is not None and partition is not None and lease is not None:
            self._own_triggers[next_step_key] = (partition, lease)

        async def publish() -> None:
            try:
                await self._publisher.publish(
                    self._states_topic, order_id, value, headers, pinned[0]
                )
            except PublishError as exc:
                if exc.unknown_partition and pinned[0] is not None:
                    # The states topic has fewer partitions than the one the order came from
                    # (grown unequally): the key decides, as it would without pinning.
                    log.warning("states topic lacks partition %s; publishing by key", pinned[0])
                    pinned[0] = None
                    if next_step_key is not None:
                        self._own_triggers.pop(next_step_key, None)
                raise

        await retry_async(
            "publishing state",
            publish,
            retry_on=(PublishError,),
            backoff=self._backoff,
            logger=log,
        )

    async def _send(self, message: OutgoingEmail, still_ours: Callable[[], bool]) -> None:
        """Sends until the server takes `message`; PermanentMailError if it refuses it for good.

        An outage is the server's or our setup's fault, never this message's: it is retried for
        as long as it lasts and reported to the MailOutage (which pauses intake and logs it).
        Before every attempt the step must still own its partition: once a rebalance gave the
        partition away, the next owner redoes the step, so sending here would e-mail twice.
        Not `retry_async`: an outage is logged by the MailOutage, once per interval.
        """
        with self._mail_outage.step() as step:
            for delay in self._backoff.delays():
                if not still_ours():
                    raise StepHandedBack(message.message_id)
                try:
                    await self._mailer.send_async(message)
                except MailOutageError as exc:
                    self._mail_outage.failed(step, str(exc))
                except TransientMailError as exc:
                    self._mail_outage.answered()
                    log.warning("sending e-mail failed: %s; retrying in %.1fs", exc, delay)
                except PermanentMailError:
                    self._mail_outage.answered()
                    raise
                else:
                    self._mail_outage.answered()
                    return
                await asyncio.sleep(delay)

    async def _notify_and_record(
        self,
        order: Order,
        state: OrderState,
        correlation_id: str,
        still_ours: Callable[[], bool],
        hurry_current: bool = True,
    ) -> tuple[str, asyncio.Future[None]]:
        """The e-mail's status, and the write of the order's current-state document: submitted
        with the ledger entry, not after it (an order alone waited ~1 ms a step for it); the
        send slot is held only until the ledger entry is stored. Without `hurry_current`, an
        order alone's current state waits for its batch like any other."""
        message = self._renderer.render(order, state, order.reached[state])
        status, error = EMAIL_SENT, None
        hurried_alone: list[bool] = []
        async with self._send_slots:
            try:
                await self._send(message, still_ours)
            except PermanentMailError as exc:
                status, error = EMAIL_REJECTED, str(exc)
                log.error(
                    "e-mail rejected permanently; dead-lettered",
                    extra={"order_id": order.order_id, "state": state.value, "reason": error},
                )
                await self._dead_letter("notification", order.order_id, message.data, error)
            written = self._index.write_event(
                event_document(
                    order,
                    state,
                    email_status=status,
                    email_message_id=message.message_id,
                    email_error=error,
                    correlation_id=correlation_id,
                )
            )
            order_written = self._index.write_order(order_document(order))
            self._awaiting_ledger += 1
            if self._awaiting_ledger >= self._unrecorded_sends:
                # Every send slot waits for its ledger entry: no e-mail can go out, so no event
                # can join the bulk while it waits out its batching interval. Waiting held the
                # e-mails to the bound's worth per interval (32 per 50 ms: ~110 orders/s).
                self._index.hurry_ledger()
            elif state.is_final and hurry_current:
                # No step follows that the ledger's answer would hold: alone, the order's last
                # current state goes beside it, not one request after it.
                self._hurry_if_alone(self._index.hurry)
            else:
                self._hurry_if_alone(self._index.hurry_ledger, hurried_alone)
            try:
                await written
                if hurried_alone and hurry_current:
                    # Alone, its current state goes once the ledger entry is stored, while the
                    # state record is published: sent beside the ledger's request, it delayed
                    # the ledger's answer (and so the step) by a request's worth of CPU.
                    self._hurry_if_alone(self._index.hurry)
            except BaseException:
                order_written.add_done_callback(_retrieved)  # the step failed; nobody awaits it
                raise
            finally:
                self._awaiting_ledger -= 1
        return status, order_written


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
