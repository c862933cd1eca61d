"""The producer's live view of `Pedidos.estados`: one Kafka consumer per process, on its own thread.

Each process uses its own group id, so every producer replica sees every state record; nothing
is committed. The feed only has to cover what happens *after* it starts (older states are read
from Elasticsearch), so every partition starts at the first record written at or after
`started_at - START_MARGIN_S` (the margin absorbs clock skew between the consumer's host, which
stamps the records, and ours):

* the high watermark is read first, then `offsets_for_times(start)`; a result of -1 ("no record
  that recent") means "start at that watermark", which on Apache Kafka is exact: any record
  produced after the watermark was read is at or beyond it.
* On Tansu (the embedded broker) the end offsets are wrong after batched produce (`latest`
  replays nearly the whole partition) and `offsets_for_times` answers 0 instead of -1 for a time
  past the last record. The feed therefore also skips every record whose Kafka timestamp is
  older than the start: on Tansu that turns "start at 0" into a cheap scan that delivers nothing
  old, on Kafka it costs nothing.

`auto.offset.reset=latest` is not used for the reasons above. After a rebalance (only when the
topic gains partitions: the group has one member) a partition resumes where the feed left it.
Records may arrive twice (see the README, "Delivery guarantees"); the reader keeps only forward
moves.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from pedidos.adapters.kafka.consuming import close_member, consume_available
from pedidos.adapters.kafka.record_source import group_timing
from pedidos.wire.records import Headers, PoisonRecord, StateReached, decode

log = logging.getLogger(__name__)

START_MARGIN_S = 30.0
FETCH_BATCH = 500
# As the consumer's loop does: while records come, what is queued or the first to arrive within
# a short wait; after an empty fetch, one record with a long wait (returned as it arrives).
POLL_TIMEOUT_S = 0.02
IDLE_POLL_TIMEOUT_S = 0.5
OFFSETS_TIMEOUT_S = 10.0
WARN_EVERY_S = 10.0


def read_state(value: bytes | None, headers: Headers | None = None) -> StateReached | None:
    """The state record in `value`, or None for anything else (the consumer dead-letters bad
    records; the feed only skips them). Decoded by the one record decoder, so a walk out of the
    domain's order never reaches a watcher. `headers` give the order its trace id, if any."""
    try:
        record = decode(value, headers)
    except PoisonRecord:
        return None
    return record if isinstance(record, StateReached) else None


def feed_config(bootstrap_servers: str, session_timeout_ms: int) -> dict[str, Any]:
    unique = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return {
        "bootstrap.servers": bootstrap_servers,
        # Unique per process: each replica is the only member of its group and gets everything.
        "group.id": f"pedidos-producer-feed-{unique}",
        "client.id": "pedidos-producer-feed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Only used if positioning by time fails; the timestamp filter still applies.
        "auto.offset.reset": "earliest",
        # As the consumer's: a rebalance waits a minute at most for a member that never rejoins.
        **group_timing(session_timeout_ms),
        "fetch.wait.max.ms": 100,
        # Notice new partitions (and a topic created after we started) within seconds.
        "topic.metadata.refresh.interval.ms": 10_000,
    }


class KafkaStateFeed:
    """Consumes the state topic and hands each fetched batch to `deliver` (on the feed thread)."""

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        deliver: Callable[[list[StateReached]], None],
        *,
        start_margin_s: float = START_MARGIN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = {**config, "error_cb": self._on_error}
        self._topic = topic
        self._deliver = deliver
        self.start_ms = int((clock() - start_margin_s) * 1000)
        self._busy = False
        # Next offset per partition; touched only on the feed thread.
        self._positions: dict[tuple[str, int], int] = {}
        self._warned: dict[str, float] = {}
        self._stop = threading.Event()
        self.assigned = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-state-feed", daemon=True)

    def _on_error(self, error: KafkaError) -> None:
        self._warn(error.str())

    def _warn(self, text: str) -> None:
        # librdkafka repeats a connection error many times a second while the broker is down.
        now = time.monotonic()
        if now - self._warned.get(text, -WARN_EVERY_S) >= WARN_EVERY_S:
            if len(self._warned) > 100:
                self._warned.clear()
            self._warned[text] = now
            log.warning("kafka state feed: %s", text)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    # -- the feed thread ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            consumer = Consumer(self._config)
        except KafkaException as exc:
            log.error("kafka state feed could not start: %s", exc)
            return
        consumer.subscribe(
            [self._topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        try:
            while not self._stop.is_set():
                batch = self._fetch(consumer)
                if batch:
                    self._deliver(batch)
        except Exception:
            log.exception("kafka state feed stopped by an error")
        finally:
            close_member(consumer)

    def _fetch(self, consumer: Consumer) -> list[StateReached]:
        batch: list[StateReached] = []
        if self._busy:
            messages = consume_available(consumer, FETCH_BATCH, POLL_TIMEOUT_S)
        else:
            messages = consumer.consume(1, IDLE_POLL_TIMEOUT_S)
        self._busy = bool(messages)
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    self._warn(error.str())
                continue
            offset = message.offset()
            if offset is not None:
                self._positions[(str(message.topic()), int(message.partition() or 0))] = offset + 1
            kind, stamp = message.timestamp()
            if kind != TIMESTAMP_NOT_AVAILABLE and stamp < self.start_ms:
                continue
            record = read_state(message.value(), message.headers())  # type: ignore[arg-type]
            if record is not None:
                batch.append(record)
        return batch

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        fresh = []
        for partition in partitions:
            known = self._positions.get((partition.topic, partition.partition))
            if known is None:
                fresh.append(partition)
            else:
                partition.offset = known
        if fresh:
            self._position_by_time(consumer, fresh)
        consumer.assign(partitions)
        self.assigned.set()
        log.info(
            "state feed assigned",
            extra={
                "partitions": len(partitions),
                "offsets": {f"{p.topic}/{p.partition}": p.offset for p in partitions},
            },
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.unassign()

    def _position_by_time(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            # The watermark first: see the module docstring for why the order matters.
            highs = [
                consumer.get_watermark_offsets(
                    TopicPartition(p.topic, p.partition), timeout=OFFSETS_TIMEOUT_S
                )[1]
                for p in partitions
            ]
            found = consumer.offsets_for_times(
                [TopicPartition(p.topic, p.partition, self.start_ms) for p in partitions],
                timeout=OFFSETS_TIMEOUT_S,
            )
        except KafkaException as exc:
            log.warning("state feed: offsets by time failed (%s); scanning from the start", exc)
            for partition in partitions:
                partition.offset = OFFSET_BEGINNING
            return
        for partition, high, result in zip(partitions, highs, found, strict=True):
            partition.offset = result.offset if result.offset >= 0 else max(high, 0)
