"""One consumed record, one task: decode it, wait until its step is due, take the step, and
mark the record done (or dead-letter it) so its offset can be committed.

The wall clock and the sleep are injected, the same clock the order walk stamps states with,
so a test runs a whole walk in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import datetime
from functools import partial
from typing import Any

from consumer.admission import Admission
from consumer.assignments import Assignments, Ticket
from consumer.dead_letters import DeadLetters
from consumer.metrics import ConsumerMetrics
from pedidos.adapters.kafka import messaging_spans
from pedidos.adapters.kafka.record_source import ConsumedRecord
from pedidos.domain.order import Order, utc_now
from pedidos.domain.states import IllegalTransition, OrderState
from pedidos.ports import PermanentIndexError
from pedidos.runtime import tracing
from pedidos.services.order_walk import NextStep, OrderWalk, StepDue, StepHandedBack, next_step
from pedidos.wire.records import PoisonRecord, decode, state_in_headers

log = logging.getLogger(__name__)

# Errors a record itself causes; anything else is logged as a bug (and dead-lettered too).
EXPECTED = (PoisonRecord, IllegalTransition, PermanentIndexError)


class StepScheduler:
    def __init__(
        self,
        walk: OrderWalk,
        assignments: Assignments,
        admission: Admission,
        dead_letters: DeadLetters,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: ConsumerMetrics | None = None,
        group: str = "",
        states_topic: str | None = None,
    ) -> None:
        """With `states_topic`, a step due at once is taken as soon as the step before it is
        recorded, ahead of the state record that triggers it (`OrderWalk.enter`); not while
        tracing, whose trace has one process span per record."""
        self._states_topic = states_topic
        # The steps taken ahead in flight (and records whose step ahead failed, going to the
        # dead-letter topic): a stop waits for them as for the records' own.
        self.ahead: set[asyncio.Task[None]] = set()
        self._metrics = metrics or ConsumerMetrics()
        self._walk = walk
        self._assignments = assignments
        self._admission = admission
        self._dead_letters = dead_letters
        self._clock = clock
        self._sleep = sleep
        self._group = group  # for the process spans
        self.processed = 0

    def waiting_on_broker(self, for_at_least_s: float) -> list[asyncio.Task[Any]]:
        """The `process` tasks whose step waits only for the broker (`OrderWalk`'s)."""
        return self._walk.waiting_on_broker(for_at_least_s)

    def done_already(self, record: ConsumedRecord, ticket: Ticket) -> bool:
        """Takes care of a state record whose step this process took or is taking ahead of it,
        as `process` would, without a task or decoding the record: done at once, or once the
        step ends (or, if the step failed, by `process`, which fails the same way). False for
        any other record."""
        if record.topic != self._states_topic or record.key is None or tracing.enabled():
            return False  # while tracing, every record has its process span
        state = state_in_headers(record.headers)
        if state is None or state.is_final:
            return False
        step, order_id = state.next(), record.key.decode(errors="replace")
        if self._walk.done(order_id, step):
            self._done(step, order_id, ticket)
            return True
        running = self._walk.running_ahead(order_id, step)
        if running is None:
            return False
        running.add_done_callback(partial(self._step_ended, record, ticket, step, order_id))
        return True

    def _step_ended(
        self,
        record: ConsumedRecord,
        ticket: Ticket,
        step: OrderState,
        order_id: str,
        outcome: asyncio.Future[None],
    ) -> None:
        # A cancelled step's future may also hold the CancelledError (OrderWalk.enter sets it).
        if outcome.cancelled() or isinstance(
            error := outcome.exception(), StepHandedBack | asyncio.CancelledError
        ):
            return  # not done here: left uncommitted for the partition's next owner
        if error is None:
            self._done(step, order_id, ticket)
            return
        task = asyncio.create_task(self.process(record, ticket))  # dead-letters it
        self.ahead.add(task)
        task.add_done_callback(self.ahead.discard)

    def _done(self, step: OrderState, order_id: str, ticket: Ticket) -> None:
        self._metrics.step(step, "done")
        if step.is_final:
            self._admission.closed(order_id)
        self._assignments.finish(ticket)
        self.processed += 1

    async def process(self, record: ConsumedRecord, ticket: Ticket) -> None:
        worked = False
        step: NextStep | None = None
        metrics = self._metrics
        try:
            step = next_step(decode(record.value, record.headers))
            if step is not None:
                wait = step.wait_s(self._clock())
                if wait > 0:  # a step already due skips a pass of the event loop
                    await self._sleep(wait)
                if not self._assignments.claim(ticket):
                    # The partition is moving to another consumer; it redoes this record.
                    metrics.step(step.state, "not_ours")
                    return
                worked = True
                # The span starts once the stage delay is over: it times the step, not the wait.
                with self._process_span(record, step):
                    await self._walk.enter(
                        step.order,
                        step.state,
                        step.correlation_id,
                        ticket.partition,
                        lambda: self._assignments.still_ours(ticket),
                        # Partitions assigned together share a generation; see Assignments.
                        lease=ticket.generation,
                        then=self._then(),
                    )
                metrics.step(step.state, "done")
                if step.state.is_final:
                    self._admission.closed(step.order.order_id)
                    metrics.finished(step.order, step.state)
        except asyncio.CancelledError:
            if worked:
                self._assignments.release(ticket)
            raise
        except StepHandedBack:
            self._assignments.release(ticket)
            metrics.step(step.state if step else None, "handed_back")
            log.info(
                "step handed back to the partition's next owner", extra={"source": ticket.source}
            )
            return
        except Exception as exc:
            metrics.step(step.state if step else None, "dead_lettered")
            await self._dead_letter(record, ticket, exc)
        self._assignments.finish(ticket, worked)
        self.processed += 1

    def _then(self) -> StepDue | None:
        if self._states_topic is None or tracing.enabled():
            return None
        return self._take_ahead

    def _take_ahead(
        self, order: Order, state: OrderState, correlation_id: str, partition: int, lease: object
    ) -> None:
        """Starts `order`'s step into `state` before its trigger, a state record on `partition`
        of the states topic, is read: only while that partition is ours under `lease` (it was
        assigned with the trigger's) and not leaving. Claimed like the record's own step, so a
        revoke waits for it; the record, when read, finds it done or running."""
        if self._states_topic is None or not isinstance(lease, int):
            return
        ticket = Ticket(self._states_topic, partition, -1, lease)  # never finished: no offset
        if not self._assignments.claim(ticket):
            return
        task = asyncio.create_task(self._step_ahead(order, state, correlation_id, ticket))
        self.ahead.add(task)
        task.add_done_callback(self.ahead.discard)

    async def _step_ahead(
        self, order: Order, state: OrderState, correlation_id: str, ticket: Ticket
    ) -> None:
        try:
            await self._walk.enter(
                order,
                state,
                correlation_id,
                ticket.partition,
                lambda: self._assignments.still_ours(ticket),
                lease=ticket.generation,
                then=self._then(),
                ahead=True,
            )
            if state.is_final:  # its record finds the step done, with no time of its own
                self._metrics.finished(order, state)
        except StepHandedBack:
            pass  # the partition is leaving: its next owner takes the step from the record
        except Exception as exc:
            # The record, when read here, fails the same way and is dead-lettered then.
            log.warning(
                "step taken ahead of its record failed",
                extra={"order_id": order.order_id, "state": state.value},
                exc_info=True,
            )
            # The walk keeps the failure for that record (up to 1,000 of them, for records that
            # may never come back here): logged, its traceback would only keep the step's
            # frames, order and e-mail alive (and those of the exceptions it was raised from).
            failure: BaseException | None = exc
            while failure is not None:
                failure.__traceback__ = None
                failure = failure.__cause__ or failure.__context__
        finally:
            self._assignments.release(ticket)

    def _process_span(
        self, record: ConsumedRecord, step: NextStep
    ) -> AbstractContextManager[object]:
        return messaging_spans.processing(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.headers,
            self._group,
            {"pedidos.order.id": step.order.order_id, "pedidos.order.state": step.state.value},
        )

    async def _dead_letter(self, record: ConsumedRecord, ticket: Ticket, exc: Exception) -> None:
        source = ticket.source
        if isinstance(exc, EXPECTED):
            log.error("record dead-lettered", extra={"source": source, "reason": str(exc)})
        else:
            # A bug must not stop the pipeline or lose the record: park it with the reason.
            log.exception("unexpected error; record dead-lettered", extra={"source": source})
        key = (record.key or b"").decode(errors="replace")
        reason = f"{exc.__class__.__name__}: {exc}"
        await self._dead_letters.send(
            "record", key, record.value or b"", reason, source, record.headers
        )
        self._admission.closed(key)  # its walk ends here
