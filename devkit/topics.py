"""What landed in Kafka, read back (and accepted orders written without a producer)."""

from __future__ import annotations

import time
import uuid
from typing import cast

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from devkit.orders import make_details, order_record
from pedidos.adapters.kafka.consuming import close_member
from pedidos.domain.order import Order, utc_now

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create `topic` (one replica) and wait until the broker has it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until its future is done
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def read_topic(
    bootstrap: str, topic: str, min_count: int, timeout: float = 20, settle_s: float = 1.0
) -> list[Record]:
    """Every record of `topic` (waits for at least `min_count`, then `settle_s` for extras)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    quiet_until: float | None = None
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(500, 0.2):
                if message.error() is None:
                    # A consumed record's headers: a list of (name, bytes) pairs.
                    headers = cast(list[tuple[str, bytes]], list(message.headers() or []))
                    records.append((message.key(), message.value(), headers))
            if len(records) >= min_count:
                quiet_until = quiet_until or time.monotonic() + settle_s
                if time.monotonic() >= quiet_until:
                    break
    finally:
        close_member(consumer)
    return records


def topic_size(bootstrap: str, topic: str, partitions: int | None = None) -> int:
    """How many records `topic` holds: the sum of its end offsets (exact on Apache Kafka, not on
    Tansu). `partitions`: its first N only, without asking the broker for its metadata."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"size-{uuid.uuid4()}"})
    try:
        if partitions is None:
            partitions = len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        )
    finally:
        consumer.close()


def publish_order_records(
    bootstrap: str, topic: str, count: int, email: str = "comprador@example.cl"
) -> list[str]:
    """Publishes `count` accepted orders on `topic` as the producer does; their order ids.

    For tests of the consumer alone: the same records, without a producer process.
    """
    details = make_details(customer_email=email)
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    order_ids = []
    for _ in range(count):
        order = Order(order_id=str(uuid.uuid4()), details=details, accepted_at=utc_now())
        key, value, headers = order_record(order)
        producer.produce(topic, key=key.encode(), value=value, headers=list(headers))
        order_ids.append(order.order_id)
    assert producer.flush(30) == 0, "Kafka did not take the order records"
    return order_ids
