"""The Kafka side of the consumer: fetch, schedule each record as its own task, commit safely.

A record's offset is committed only when it and every earlier record of its partition are done,
so a crash or rebalance redelivers unfinished work and never skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache

from consumer.mail_outage import MailOutage
from consumer.offsets import PartitionOffsets
from consumer.workflow import OrderWorkflow, StepHandedBack
from pedidos.adapters.kafka.record_source import ConsumedRecord, KafkaRecordSource
from pedidos.domain.order import utc_now
from pedidos.domain.states import FIRST_STATE, IllegalTransition
from pedidos.ports import PermanentIndexError, Publisher
from pedidos.wire.records import DetailsCache, OrderAccepted, PoisonRecord, decode

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
# A record's stage_ends_at further away than this is treated as due now (clock skew, bad data).
MAX_STAGE_WAIT_S = 60.0
COMMIT_INTERVAL_S = 0.5
# An open order not finished within this is forgotten (it moved to another consumer, or is stuck
# in retries that the in-flight bound already accounts for).
OPEN_ORDER_TTL_S = 600.0
# The smallest fetch near the open-orders bound: small enough not to overshoot it much.
MIN_FETCH = 16


# How long a revoke waits for steps that are already e-mailing/indexing on those partitions.
REVOKE_WAIT_S = 15.0


@dataclass
class _Assignment:
    offsets: PartitionOffsets
    generation: int
    # Steps past their stage delay, doing effects; a revoke waits for them to finish.
    working: int = 0
    revoking: bool = False


class DeadLetters:
    """Publishes what can never be processed to the dead-letter topic, with the reason."""

    def __init__(self, publisher: Publisher, topic: str) -> None:
        self._publisher = publisher
        self._topic = topic

    async def send(
        self,
        kind: str,
        key: str,
        value: bytes,
        error: str,
        source: str = "",
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        all_headers = [
            *(headers or []),
            ("pedidos-dlq-kind", kind.encode()),
            ("pedidos-error", error[:1000].encode()),
            ("pedidos-source", source.encode()),
        ]
        delay = 0.2
        while True:
            try:
                await self._publisher.publish(self._topic, key, value, all_headers)
                return
            except Exception as exc:
                log.warning("dead-letter publish failed: %s; retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def for_workflow(self, kind: str, key: str, value: bytes, error: str) -> None:
        await self.send(kind, key, value, error)


class ConsumerRunner:
    def __init__(
        self,
        source_factory: Callable[
            [Callable[[list[TopicPartition]], None], Callable[[list[TopicPartition]], None]],
            KafkaRecordSource,
        ],
        workflow: OrderWorkflow,
        dead_letters: DeadLetters,
        max_in_flight: int,
        fetch_batch: int = 500,
        *,
        orders_topic: str | None = None,
        max_open_orders: int | None = None,
        mail_outage: MailOutage | None = None,
    ) -> None:
        self._source = source_factory(self._assigned, self._revoked)
        self._mail_outage = mail_outage
        self._workflow = workflow
        self._dead_letters = dead_letters
        self._max_in_flight = max_in_flight
        self._fetch_batch = fetch_batch
        # Rebalance callbacks run on the consumer thread, tasks on the event loop.
        self._lock = threading.Lock()
        self._assignments: dict[TopicPartition, _Assignment] = {}
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused: frozenset[str] = frozenset()
        self._orders_topic = orders_topic
        self._max_open_orders = max_open_orders
        # Orders this process started and has not finished: while there are too many, new
        # orders wait on `Pedidos` and the states of started ones go first, so a backlog is
        # worked off order by order instead of every order sitting half done. Expiring entries
        # keep an order finished elsewhere (after a rebalance) from holding a place for good.
        self._open_orders: TTLCache[str, bool] = TTLCache(
            max(max_open_orders or 1, 1) * 2, OPEN_ORDER_TTL_S
        )
        # Set by a revoke (consumer thread): orders may now finish elsewhere, so start afresh.
        self._forget_open_orders = False
        # An order's records (acceptance + five states) repeat its details: validate once.
        self._details = DetailsCache()
        self.processed = 0

    # -- rebalance (consumer thread) -------------------------------------------------------
    def _assigned(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self._generation += 1
            for tp in partitions:
                self._assignments[tp] = _Assignment(PartitionOffsets(), self._generation)
        log.info("partitions assigned", extra={"partitions": [f"{t}-{p}" for t, p in partitions]})

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        # Steps still waiting out a stage delay are handed back; steps doing effects finish
        # first, so the next owner never redoes a step that is half done here.
        self._forget_open_orders = True
        with self._lock:
            for tp in partitions:
                if tp in self._assignments:
                    self._assignments[tp].revoking = True
        deadline = time.monotonic() + REVOKE_WAIT_S
        while True:
            with self._lock:
                busy = sum(a.working for tp in partitions if (a := self._assignments.get(tp)))
                if busy == 0 or time.monotonic() > deadline:
                    offsets = self._collect_commits(partitions)
                    for tp in partitions:
                        self._assignments.pop(tp, None)
                    break
            time.sleep(0.01)
        self._source.commit_now(offsets)
        log.info(
            "partitions revoked",
            extra={"partitions": [f"{t}-{p}" for t, p in partitions], "unfinished": busy},
        )

    def _collect_commits(
        self, partitions: list[TopicPartition] | None = None
    ) -> list[tuple[str, int, int]]:
        offsets = []
        for tp in partitions if partitions is not None else list(self._assignments):
            assignment = self._assignments.get(tp)
            if assignment is None:
                continue
            offset = assignment.offsets.to_commit()
            if offset is not None:
                assignment.offsets.mark_committed(offset)
                offsets.append((tp[0], tp[1], offset))
        return offsets

    # -- main loop -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, grace_s: float = 15.0) -> None:
        await self._source.start()
        committer = asyncio.create_task(self._commit_periodically(stop))
        try:
            while not stop.is_set():
                free = self._max_in_flight - len(self._tasks)
                paused = self._topics_to_pause(free)
                if paused != self._paused:
                    self._paused = paused
                    await self._source.pause_topics(paused)
                    if self._mail_outage is not None and self._mail_outage.active:
                        log.warning("intake paused during the mail outage")
                if self._forget_open_orders:
                    self._forget_open_orders = False
                    self._open_orders.clear()
                wanted = min(free, self._fetch_batch, self._admission_room())
                messages = await self._source.fetch(max(1, wanted), 0.1)
                for message in messages:
                    self._schedule(message)
        finally:
            await self._shutdown(committer, grace_s)

    def _topics_to_pause(self, free: int) -> frozenset[str]:
        if free <= 0:
            return self._source.topics
        if self._mail_outage is not None and self._mail_outage.active:
            # Every step would only wait on the mail server: fetch nothing until it is back; the
            # steps already started keep retrying and are what notices it is back.
            return self._source.topics
        if self._orders_topic is None or self._max_open_orders is None:
            return frozenset()
        open_orders = len(self._open_orders)
        # Hysteresis: resume at 80 % so that the topic is not toggled on every fetch.
        limit = self._max_open_orders
        if self._orders_topic in self._paused:
            limit = int(limit * 0.8)
        return frozenset({self._orders_topic}) if open_orders >= limit else frozenset()

    def _admission_room(self) -> int:
        """How many records one fetch may bring while new orders are still admitted."""
        if self._max_open_orders is None or self._orders_topic in self._paused:
            return self._fetch_batch
        return max(self._max_open_orders - len(self._open_orders), MIN_FETCH)

    def _schedule(self, message: ConsumedRecord) -> None:
        tp = (message.topic, message.partition)
        offset = message.offset
        with self._lock:
            assignment = self._assignments.get(tp)
            if assignment is None:
                return  # revoked between fetch and here; the new owner reads it again
            assignment.offsets.start(offset)
            generation = assignment.generation
        if message.topic == self._orders_topic and self._max_open_orders is not None:
            # Counted from scheduling on, so one fetch cannot admit far past the bound.
            self._open_orders[(message.key or b"").decode(errors="replace")] = True
        task = asyncio.create_task(self._process(message, tp, offset, generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_work(self, tp: TopicPartition, generation: int) -> bool:
        """Claim the right to do effects for a record; False if its partition is leaving."""
        with self._lock:
            assignment = self._assignments.get(tp)
            if assignment is None or assignment.generation != generation or assignment.revoking:
                return False
            assignment.working += 1
            return True

    def _still_ours(self, tp: TopicPartition, generation: int) -> bool:
        """The partition is still assigned here and not being handed over."""
        with self._lock:
            assignment = self._assignments.get(tp)
            return (
                assignment is not None
                and assignment.generation == generation
                and not assignment.revoking
            )

    def _finish(
        self, tp: TopicPartition, offset: int, generation: int, worked: bool = False
    ) -> None:
        with self._lock:
            assignment = self._assignments.get(tp)
            if assignment is not None and assignment.generation == generation:
                assignment.offsets.finish(offset)
                if worked:
                    assignment.working -= 1
        self.processed += 1

    def _release(self, tp: TopicPartition, generation: int) -> None:
        with self._lock:
            assignment = self._assignments.get(tp)
            if assignment is not None and assignment.generation == generation:
                assignment.working -= 1

    async def _process(
        self, message: ConsumedRecord, tp: TopicPartition, offset: int, generation: int
    ) -> None:
        source = f"{tp[0]}/{tp[1]}/{offset}"
        raw = message.value
        key = (message.key or b"").decode(errors="replace")
        worked = False
        try:
            record = decode(raw, message.headers, self._details)
            if isinstance(record, OrderAccepted):
                target, due = FIRST_STATE, None
            elif record.state.is_final:
                self._finish(tp, offset, generation)
                return
            else:
                target, due = record.state.next(), record.stage_ends_at
            if due is not None:
                wait = (due - utc_now()).total_seconds()
                if wait > 0:  # a step already due skips a pass of the event loop
                    await asyncio.sleep(min(wait, MAX_STAGE_WAIT_S))
            if not self._start_work(tp, generation):
                return  # the partition is moving to another consumer; it redoes this record
            worked = True
            await self._workflow.enter(
                record.order,
                target,
                record.correlation_id,
                tp[1],
                lambda: self._still_ours(tp, generation),
            )
            if target.is_final:
                self._open_orders.pop(record.order.order_id, None)
        except asyncio.CancelledError:
            if worked:
                self._release(tp, generation)
            raise
        except StepHandedBack:
            self._release(tp, generation)
            log.info("step handed back to the partition's next owner", extra={"source": source})
            return
        except Exception as exc:
            if isinstance(exc, PoisonRecord | IllegalTransition | PermanentIndexError):
                log.error("record dead-lettered", extra={"source": source, "reason": str(exc)})
            else:
                # A bug must not stop the pipeline or lose the record: park it with the reason.
                log.exception("unexpected error; record dead-lettered", extra={"source": source})
            reason = f"{exc.__class__.__name__}: {exc}"
            await self._dead_letters.send(
                "record", key, raw or b"", reason, source, message.headers
            )
            self._open_orders.pop(key, None)  # its walk ends here
        self._finish(tp, offset, generation, worked)

    async def _commit_periodically(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), COMMIT_INTERVAL_S)
            with self._lock:
                offsets = self._collect_commits()
            # Queued, not awaited: a commit waiting for a coordinator (the broker restarting)
            # must not hold the consumer thread, or the group drops us for not polling.
            await self._source.commit(offsets, wait=False)

    async def _shutdown(self, committer: asyncio.Task[None], grace_s: float) -> None:
        log.info("consumer stopping", extra={"in_flight": len(self._tasks)})
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        committer.cancel()
        await asyncio.gather(committer, return_exceptions=True)
        with self._lock:
            offsets = self._collect_commits()
        await self._source.commit(offsets)
        await self._source.close()
