"""The consumer's loop: fetch, run each record as its own task, commit what is safely done.

A record's offset is committed only when it and every earlier record of its partition are done,
so a crash or rebalance redelivers unfinished work and never skips it. The parts:
`Assignments` (owned partitions, gap-free offsets), `Admission` (what to pause),
`StepScheduler` (one record's step, on time), `DeadLetters`; the order's rules are in
`pedidos.services.order_walk`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from consumer.admission import Admission
from consumer.assignments import Assignments, Commit, TopicPartition
from consumer.scheduling import StepScheduler
from consumer.stuck import wait_until_stuck
from pedidos.adapters.kafka.record_source import ConsumedRecord

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 0.5
# A fetch returns what is queued, or the first record to arrive within its timeout. Busy, a
# short one: the loop gets back soon to admit and commit (commits share the consumer thread).
# Idle, one record is asked for, so an idle consumer wakes twice a second, not a hundred times.
FETCH_TIMEOUT_S = 0.01
IDLE_FETCH_TIMEOUT_S = 0.5
# At a stop, how long steps already e-mailing or indexing get to finish and record it.
STEPS_GRACE_S = 15.0
# At a stop, how long a step e-mailed and recorded waits for the broker to take its state record
# before it is handed back: a broker that answers acks in milliseconds; one that is down or
# silent would hold the whole grace, and the next owner redoes such a step from the ledger.
BROKER_PATIENCE_S = 2.0
# At a stop, the final commit and leaving the group. librdkafka's close() waits without end for
# a broker that is up but answers nothing (a network partition; SIGSTOP in the tests), which held
# stops until the services' 60 s limit killed them. Past this, the stop goes on without it.
SOURCE_CLOSE_LIMIT_S = 10.0


class RecordSource(Protocol):
    """A consumer-group member (KafkaRecordSource; an in-memory fake in the unit tests)."""

    @property
    def topics(self) -> frozenset[str]: ...
    async def start(
        self,
        on_assign: Callable[[list[TopicPartition]], None],
        on_revoke: Callable[[list[TopicPartition], bool], None],
    ) -> None: ...
    async def fetch(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]: ...
    def commit_now(self, offsets: list[Commit], wait: bool = True) -> None: ...
    async def commit(self, offsets: list[Commit], wait: bool = True) -> None: ...
    async def pause_topics(self, topics: frozenset[str]) -> None: ...
    async def close(self) -> None: ...
    def busy(self) -> tuple[str, float] | None: ...


class ConsumerLoop:
    def __init__(
        self,
        source: RecordSource,
        scheduler: StepScheduler,
        assignments: Assignments,
        admission: Admission,
        *,
        max_in_flight: int,
        fetch_batch: int = 500,
        commit_interval_s: float = COMMIT_INTERVAL_S,
        close_limit_s: float = SOURCE_CLOSE_LIMIT_S,
        broker_patience_s: float = BROKER_PATIENCE_S,
    ) -> None:
        self._source = source
        self._scheduler = scheduler
        self._assignments = assignments
        self._admission = admission
        self._max_in_flight = max_in_flight
        self._fetch_batch = fetch_batch
        self._commit_interval_s = commit_interval_s
        self._close_limit_s = close_limit_s
        self._broker_patience_s = broker_patience_s
        self._tasks: set[asyncio.Task[None]] = set()
        # What the source's thread was stuck in when the loop gave up on it (see consumer.stuck).
        self.stuck: str | None = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def processed(self) -> int:
        return self._scheduler.processed

    async def run(self, stop: asyncio.Event, grace_s: float = STEPS_GRACE_S) -> None:
        await self._source.start(self._assigned, self._revoked)
        committer = asyncio.create_task(self._commit_periodically(stop))
        # No deadline unless the source's thread is stuck: then the watch ends the wait for a
        # call that will not return (one timeout for the whole loop, nothing per fetch).
        fetching = asyncio.timeout(None)
        watch = asyncio.create_task(self._give_up_when_stuck(stop, fetching))
        try:
            async with fetching:
                while not stop.is_set():
                    free = self._max_in_flight - len(self._tasks)
                    await self._pause_or_resume(free)
                    if self._tasks:
                        room = self._admission.room(self._fetch_batch)
                        wanted = min(free, self._fetch_batch, room)
                        fetched = await self._source.fetch(max(1, wanted), FETCH_TIMEOUT_S)
                    else:
                        fetched = await self._source.fetch(1, IDLE_FETCH_TIMEOUT_S)
                    for record in fetched:
                        self._schedule(record)
        except TimeoutError:
            if self.stuck is None:
                raise
        finally:
            watch.cancel()
            await self._shutdown(committer, grace_s)

    async def _give_up_when_stuck(self, stop: asyncio.Event, fetching: asyncio.Timeout) -> None:
        self.stuck = await wait_until_stuck(self._source, stop)
        if self.stuck is not None:
            stop.set()
            with contextlib.suppress(RuntimeError):  # the loop already left the `async with`
                fetching.reschedule(asyncio.get_running_loop().time())

    async def _pause_or_resume(self, free: int) -> None:
        paused = self._admission.update(free, self._source.topics)
        if paused is None:
            return
        await self._source.pause_topics(paused)
        if self._admission.mail_outage:
            log.warning("intake paused during the mail outage")

    def _schedule(self, record: ConsumedRecord) -> None:
        ticket = self._assignments.start(record.topic, record.partition, record.offset)
        if ticket is None:
            return  # revoked between fetch and here; the new owner reads it again
        self._admission.admitted(record.topic, (record.key or b"").decode(errors="replace"))
        if self._scheduler.done_already(record, ticket):
            return
        task = asyncio.create_task(self._scheduler.process(record, ticket))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- rebalance callbacks (consumer thread) ---------------------------------------------
    def _assigned(self, partitions: list[TopicPartition]) -> None:
        self._assignments.assign(partitions)
        log.info("partitions assigned", extra={"partitions": [f"{t}-{p}" for t, p in partitions]})

    def _revoked(self, partitions: list[TopicPartition], lost: bool) -> None:
        self._admission.forget()
        offsets, unfinished = self._assignments.revoke(partitions)
        if not lost:
            # Lost partitions were already given away by the group: a commit cannot succeed,
            # and a synchronous one would block this thread while the coordinator is unknown.
            self._source.commit_now(offsets)
        log.info(
            "partitions revoked",
            extra={"partitions": [f"{t}-{p}" for t, p in partitions], "unfinished": unfinished},
        )

    # -- commits ---------------------------------------------------------------------------
    async def _commit_periodically(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self._commit_interval_s)
            # Queued, not awaited: a commit waiting for a coordinator (the broker restarting)
            # must not hold the consumer thread, or the group drops us for not polling.
            await self._source.commit(self._assignments.to_commit(), wait=False)

    async def _let_steps_finish(self, grace_s: float) -> None:
        """Waits up to `grace_s` for the steps in flight, then cancels the rest; a step that has
        waited `broker_patience_s` for the broker to take its state record is handed back
        sooner (cancelled, so its record is not committed here)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        tick = self._broker_patience_s / 4
        pending: set[asyncio.Task[Any]] = self._tasks | self._scheduler.ahead
        handed_back: set[asyncio.Task[Any]] = set()
        while pending and (remaining := deadline - loop.time()) > 0:
            _, pending = await asyncio.wait(pending, timeout=min(remaining, tick))
            waiting = self._scheduler.waiting_on_broker(self._broker_patience_s)
            stalled = [task for task in waiting if task not in handed_back]
            if stalled:
                log.warning(
                    "handing back %d steps waiting over %g s for the broker to take their state "
                    "record; they are e-mailed and recorded: the next owner redoes them from "
                    "the ledger",
                    len(stalled),
                    self._broker_patience_s,
                )
                for task in stalled:
                    task.cancel()
                handed_back.update(stalled)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _shutdown(self, committer: asyncio.Task[None], grace_s: float) -> None:
        log.info("consumer stopping", extra={"in_flight": len(self._tasks)})
        # Hand over first, then wait: steps not yet e-mailing give their records back at once
        # instead of starting sends during the grace period, so what the grace cuts short is
        # only a step stuck mid-effects (e.g. Elasticsearch down), not one of hundreds queued
        # for a send slot that e-mailed and was cancelled before its ledger entry was written
        # (the next owner e-mailed again: seen in the partitions chaos run).
        self._assignments.leave()
        if self._tasks or self._scheduler.ahead:
            await self._let_steps_finish(grace_s)
        committer.cancel()
        await asyncio.gather(committer, return_exceptions=True)
        try:
            async with asyncio.timeout(self._close_limit_s):
                await self._source.commit(self._assignments.to_commit())
                await self._source.close()
        except TimeoutError:
            # As after a crash: the group gives our partitions away once our session expires,
            # and their next owner reads again what was not committed.
            log.warning(
                "kafka consumer: the final commit and close did not finish in %g s (is the "
                "broker answering?); going on without them: what was not committed is read again",
                self._close_limit_s,
            )
