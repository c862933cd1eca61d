"""Reads a topic from its start to the end it had when reading began, then stops.

Partitions are assigned, not subscribed, and nothing is committed: no consumer group is joined
or changed, so reading the dead-letter topic disturbs no one and can be repeated at will.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from admin.dlq_records import DeadLetter, Headers

# librdkafka wants a group id even for assigned partitions; it is never joined nor committed.
READER_GROUP = "pedidos-admin-dlq-reader"


class TopicReadError(Exception):
    """The topic could not be read (Kafka unreachable, no such topic, read timed out)."""


def _timestamp(message: Message) -> datetime | None:
    kind, millis = message.timestamp()
    if kind == 0 or millis < 0:  # TIMESTAMP_NOT_AVAILABLE
        return None
    return datetime.fromtimestamp(millis / 1000, UTC)


def _dead_letter(message: Message) -> DeadLetter:
    return DeadLetter(
        topic=str(message.topic()),
        partition=int(message.partition() or 0),
        offset=int(message.offset() or 0),
        timestamp=_timestamp(message),
        key=message.key(),
        value=message.value(),
        headers=_headers(message),
    )


def _headers(message: Message) -> Headers:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


def read_topic_to_end(
    bootstrap_servers: str, topic: str, timeout_s: float = 60.0
) -> Iterator[DeadLetter]:
    """Every record of `topic` up to its end offsets as read at the start; each partition's
    records in offset order (partitions are read side by side).

    `timeout_s` bounds the time without progress, not the whole read.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": READER_GROUP,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            # Failures reach the caller as one clear error; librdkafka's own lines would repeat it.
            "log_level": 2,
        }
    )
    try:
        yield from _read(consumer, topic, timeout_s)
    finally:
        consumer.close()


def _read(consumer: Consumer, topic: str, timeout_s: float) -> Iterator[DeadLetter]:
    ends, starts = _unread(consumer, topic, timeout_s)
    if not ends:
        return
    consumer.assign(starts)
    last_progress = time.monotonic()
    while ends:
        messages = consumer.consume(500, 0.5)
        if messages:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > timeout_s:
            raise TopicReadError(
                f"no progress reading {topic} for {timeout_s:.0f}s; "
                f"partitions not read to the end: {sorted(ends)}"
            )
        for message in messages:
            if _counts(message, topic, ends):
                yield _dead_letter(message)


def _unread(
    consumer: Consumer, topic: str, timeout_s: float
) -> tuple[dict[int, int], list[TopicPartition]]:
    """Where each non-empty partition ends now, and where to start reading it."""
    try:
        metadata = consumer.list_topics(topic, timeout=min(timeout_s, 10))
    except KafkaException as exc:
        raise TopicReadError(f"cannot reach Kafka: {exc}") from None
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        problem = described.error.str() if described is not None and described.error else ""
        raise TopicReadError(f"topic {topic!r} not found {problem}".rstrip())
    ends: dict[int, int] = {}
    starts: list[TopicPartition] = []
    for partition in sorted(described.partitions):
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=min(timeout_s, 10)
            )
        except KafkaException as exc:
            raise TopicReadError(f"cannot read the offsets of {topic}/{partition}: {exc}") from None
        if high > low:
            ends[partition] = high
            starts.append(TopicPartition(topic, partition, low))
    return ends, starts


def _counts(message: Message, topic: str, ends: dict[int, int]) -> bool:
    """Whether `message` was there when the read began; drops its partition from `ends` once
    that partition is read to its end."""
    partition = int(message.partition() or 0)
    error = message.error()
    if error is not None:
        if error.code() == KafkaError._PARTITION_EOF:
            ends.pop(partition, None)
            return False
        raise TopicReadError(f"reading {topic}/{partition}: {error.str()}")
    end = ends.get(partition)
    if end is None or (message.offset() or 0) >= end:
        return False  # written after the read began
    if (message.offset() or 0) + 1 >= end:
        ends.pop(partition)
    return True
