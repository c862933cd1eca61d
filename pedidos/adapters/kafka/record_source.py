"""A confluent-kafka consumer driven from asyncio through one dedicated thread."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pedidos.adapters.kafka.consuming import close_member, consume_available
from pedidos.runtime.hand_over import answer_from_thread

log = logging.getLogger(__name__)

PartitionsCallback = Callable[[list[tuple[str, int]]], None]
# Called with the partitions and whether they were lost (already given away by the group).
RevokeCallback = Callable[[list[tuple[str, int]], bool], None]

# The longest a rebalance waits for members to rejoin: the group coordinator takes the largest
# `max.poll.interval.ms` of the group as its rebalance timeout. Kafka's default, 5 minutes, would
# let one member that never comes back hold the whole group that long; this consumer polls at
# least twice a second, so a minute is far from its own pace.
REBALANCE_TIMEOUT_MS = 60_000


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @classmethod
    def from_message(cls, message: Message) -> ConsumedRecord:
        raw_headers = message.headers() or []
        pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
        headers = [(str(k), v if isinstance(v, bytes) else (v or "").encode()) for k, v in pairs]
        return cls(
            topic=str(message.topic()),
            partition=int(message.partition() or 0),
            offset=int(message.offset() or 0),
            key=message.key() if isinstance(message.key(), bytes) else None,
            value=message.value() if isinstance(message.value(), bytes) else None,
            headers=headers,
        )


def group_timing(
    session_timeout_ms: int, rebalance_timeout_ms: int = REBALANCE_TIMEOUT_MS
) -> dict[str, Any]:
    """How a group member proves it is alive and how long a rebalance may wait for it; shared
    by every consumer group this project joins (the consumer's, the producer's state feed)."""
    return {
        "session.timeout.ms": session_timeout_ms,
        "max.poll.interval.ms": max(rebalance_timeout_ms, session_timeout_ms),
        "heartbeat.interval.ms": max(500, session_timeout_ms // 5),
    }


@dataclass(frozen=True)
class FetchBatching:
    """How long the broker holds a fetch for more records: until `min_bytes` are there or
    `max_wait_ms` has passed. The default answers at the first record (an order alone waits for
    nothing); a larger `min_bytes` fetches a busy topic in fewer, fuller requests, and a record
    arriving alone waits up to `max_wait_ms`."""

    min_bytes: int = 1
    max_wait_ms: int = 500  # librdkafka's default


def consumer_config(
    bootstrap_servers: str,
    group_id: str,
    session_timeout_ms: int,
    rebalance_timeout_ms: int = REBALANCE_TIMEOUT_MS,
    fetch: FetchBatching = FetchBatching(),
) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        **group_timing(session_timeout_ms, rebalance_timeout_ms),
        "partition.assignment.strategy": "range",
        # librdkafka prefetches up to 64 MB by default: with a big backlog that is the whole
        # topic in memory. A few MB keep the fetcher ahead of a consumer doing ~1k records/s.
        "queued.max.messages.kbytes": 4096,
        "queued.min.messages": 2000,
        "isolation.level": "read_committed",
        "fetch.min.bytes": fetch.min_bytes,
        "fetch.wait.max.ms": fetch.max_wait_ms,
    }


# A call for the consumer thread: the function, its arguments, the loop and future to answer on.
_Call = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class ConsumerThread:
    """The one thread that runs a consumer's librdkafka calls, in the order they were asked.

    A daemon, unlike an executor's worker (which the interpreter joins at exit): with the broker
    up but answering nothing, librdkafka's close() waits for it without end, and a stop that gave
    up on it must still be able to exit."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        # The call running now and when it began (monotonic): see `busy`.
        self._current: tuple[str, float] | None = None
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def busy(self) -> tuple[str, float] | None:
        """The call running now and for how many seconds it has run; None while idle."""
        current = self._current
        if current is None:
            return None
        name, began = current
        return name, time.monotonic() - began

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """`fn(*args)` on the thread; its result or exception, on the running loop."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._calls.put((fn, args, loop, done))
        return done

    def stop(self) -> None:
        """The thread ends once the calls already asked for are done."""
        self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, args, loop, done = call
            result, failure = None, None
            self._current = (getattr(fn, "__name__", repr(fn)), time.monotonic())
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting task, raised there
                failure = exc
            finally:
                self._current = None
            answer_from_thread(loop, done, result, failure)


class KafkaRecordSource:
    """All calls into librdkafka run on one thread, so rebalance callbacks never race commits."""

    def __init__(self, config: dict[str, Any], topics: list[str]) -> None:
        self._thread = ConsumerThread("kafka-consumer")
        self._config = {**config, "error_cb": self._on_error}
        self._topics = topics
        self._topic_set = frozenset(topics)
        self._consumer: Consumer | None = None
        # Topics whose partitions stay paused, newly assigned ones included.
        self._paused_topics: frozenset[str] = frozenset()
        # Rebalance callbacks seen; consume_available drops messages a rebalance made stale.
        self._rebalances = 0

    @property
    def topics(self) -> frozenset[str]:
        return self._topic_set

    @property
    def open(self) -> bool:
        """Subscribed and not yet closed."""
        return self._consumer is not None

    def busy(self) -> tuple[str, float] | None:
        """The librdkafka call running now (rebalance callbacks run inside `_consume`) and how
        long it has run; None while idle."""
        return self._thread.busy()

    @staticmethod
    def _on_error(error: KafkaError) -> None:
        log.warning("kafka consumer: %s", error.str())

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._thread.run(fn, *args)

    def _subscribe(self, on_assign: PartitionsCallback, on_revoke: RevokeCallback) -> None:
        self._consumer = Consumer(self._config)

        def assigned(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            self._rebalances += 1
            on_assign([(p.topic, p.partition) for p in partitions])
            # Every new partition gets the pause state the caller wants now: librdkafka keeps a
            # partition's pause across a revoke, so one paused before a rebalance and assigned
            # back after the caller resumed stayed paused for good.
            self._apply_pause(consumer, partitions)

        def revoked(_: Consumer, partitions: list[TopicPartition]) -> None:
            self._rebalances += 1
            on_revoke([(p.topic, p.partition) for p in partitions], False)

        def lost(_: Consumer, partitions: list[TopicPartition]) -> None:
            # The group already gave them away: the callback must not commit them.
            self._rebalances += 1
            on_revoke([(p.topic, p.partition) for p in partitions], True)

        self._consumer.subscribe(self._topics, on_assign=assigned, on_revoke=revoked, on_lost=lost)

    async def start(self, on_assign: PartitionsCallback, on_revoke: RevokeCallback) -> None:
        """Join the group; the callbacks run on the consumer thread, inside `fetch`."""
        await self._run(self._subscribe, on_assign, on_revoke)

    def _consume(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        assert self._consumer is not None
        messages = consume_available(
            self._consumer, max_records, timeout_s, lambda: self._rebalances
        )
        good = []
        for message in messages:
            error = message.error()
            if error is None:
                good.append(ConsumedRecord.from_message(message))
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka consume error: %s", error.str())
        return good

    async def fetch(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        return list(await self._run(self._consume, max_records, timeout_s))

    def commit_now(self, offsets: list[tuple[str, int, int]], wait: bool = True) -> None:
        """Commit on the consumer thread (e.g. from on_revoke); `wait=False` only queues it."""
        if not offsets or self._consumer is None:
            return
        partitions = [TopicPartition(t, p, o) for t, p, o in offsets]
        try:
            if wait:
                self._consumer.commit(offsets=partitions, asynchronous=False)
            else:
                self._consumer.commit(offsets=partitions, asynchronous=True)
        except KafkaException as exc:
            # A failed commit means a redelivery, which the effects are idempotent for.
            log.warning("kafka commit failed: %s", exc)

    async def commit(self, offsets: list[tuple[str, int, int]], wait: bool = True) -> None:
        await self._run(self.commit_now, offsets, wait)

    def _apply_pause(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Pause the `partitions` of the paused topics, resume the others."""
        held = [p for p in partitions if p.topic in self._paused_topics]
        free = [p for p in partitions if p.topic not in self._paused_topics]
        if held:
            consumer.pause(held)
        if free:
            consumer.resume(free)

    def _pause_topics(self, topics: frozenset[str]) -> None:
        assert self._consumer is not None
        self._paused_topics = topics
        self._apply_pause(self._consumer, self._consumer.assignment())

    async def pause_topics(self, topics: frozenset[str]) -> None:
        """Stop fetching from `topics` (and only those) until called again without them.

        Paused partitions keep the group membership alive, unlike not polling at all."""
        await self._run(self._pause_topics, topics)

    def _close(self) -> None:
        if self._consumer is not None:
            close_member(self._consumer)
            self._consumer = None

    async def close(self) -> None:
        """Leave the group. Unbounded: librdkafka waits for a broker that went silent (the
        consumer loop bounds it); the thread stays behind then, and does not hold the exit."""
        closed = self._thread.run(self._close)
        self._thread.stop()
        await closed
