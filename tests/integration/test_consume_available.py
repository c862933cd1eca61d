"""A fetch for a batch returns the first record as it arrives, with whatever came with it, and
does not sit out its timeout for the rest of a batch that is not coming (librdkafka's
`consume(n, timeout)` does: every lone order's step waited up to the busy fetch's timeout)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from devkit.stack import EmbeddedStack
from pedidos.adapters.kafka.consuming import consume_available

pytestmark = pytest.mark.integration

# Far beyond a broker round trip: returning well before it means the call did not wait it out.
TIMEOUT_S = 8.0


def _subscribed(bootstrap: str, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    while not consumer.assignment():
        assert time.monotonic() < deadline, "never assigned"
        consumer.consume(1, 0.2)
    return consumer


def test_a_batch_fetch_returns_a_lone_record_as_it_arrives(stack: EmbeddedStack) -> None:
    bootstrap = stack.env()["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"available-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: its futures need it alive
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    consumer = _subscribed(bootstrap, topic)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    try:
        assert consume_available(consumer, 500, 0.2) == []  # nothing yet: waits, returns none

        def produce_soon() -> None:
            time.sleep(0.5)
            producer.produce(topic, b"lone")
            producer.flush(10)

        threading.Thread(target=produce_soon).start()
        started = time.monotonic()
        messages = consume_available(consumer, 500, TIMEOUT_S)
        took = time.monotonic() - started
        assert [m.value() for m in messages] == [b"lone"]
        assert took < TIMEOUT_S / 2, f"waited {took:.1f} s for a batch that was not coming"

        # Records already queued come back at once, all of them up to the limit.
        for n in range(5):
            producer.produce(topic, f"queued-{n}".encode())
        producer.flush(10)
        got: list[bytes | None] = []
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            got += [m.value() for m in consume_available(consumer, 3, TIMEOUT_S)]
        assert got == [f"queued-{n}".encode() for n in range(5)]
    finally:
        consumer.close()
