"""A fetch for a batch returns the first record as it arrives, with whatever came with it, and
does not sit out its timeout for the rest of a batch that is not coming (librdkafka's
`consume(n, timeout)` does: every lone order's step waited up to the busy fetch's timeout)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Message, Producer

from devkit.stack import EmbeddedStack
from devkit.topics import create_topic
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
    _until_assigned(consumer)
    return consumer


def _until_assigned(consumer: Consumer) -> None:
    deadline = time.monotonic() + 30
    while not consumer.assignment():
        assert time.monotonic() < deadline, "never assigned"
        consumer.consume(1, 0.2)


def test_a_batch_fetch_returns_a_lone_record_as_it_arrives(stack: EmbeddedStack) -> None:
    bootstrap = stack.env()["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"available-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 1)
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


class _RebalanceAfterFirstRecord(Consumer):
    """A real consumer that has a second member join right after the call that read the first
    record, and waits out a heartbeat, so the group's revoke is served by the call that reads
    the rest: a window librdkafka's own cleanup of stale messages cannot see (it spans two
    calls)."""

    def __init__(self, config: dict[str, object], join: threading.Event) -> None:
        super().__init__(config)
        self.calls = 0
        self.rebalances = 0
        self.rebalanced_in_call: int | None = None
        self._join = join

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        before = self.rebalances
        messages: list[Message] = super().consume(num_messages, timeout)
        self.calls += 1
        if self.rebalances != before and self.rebalanced_in_call is None:
            self.rebalanced_in_call = self.calls
        if self.calls == 2 and messages:
            self._join.set()
            # The coordinator answers a heartbeat (every 0.5 s) with REBALANCE_IN_PROGRESS
            # once the other member asks to join; the revoke then waits for our next call.
            time.sleep(4)
        return messages


def test_a_record_read_before_a_rebalance_is_not_returned_after_it(
    stack: EmbeddedStack,
) -> None:
    bootstrap = stack.env()["KAFKA_BOOTSTRAP_SERVERS"]
    topic, group = f"stale-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 2)
    join, stop = threading.Event(), threading.Event()
    consumer = _RebalanceAfterFirstRecord(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "range",
        },
        join,
    )

    def counted(*_: object) -> None:
        consumer.rebalances += 1

    consumer.subscribe([topic], on_assign=counted, on_revoke=counted)
    _until_assigned(consumer)
    consumer.calls, consumer.rebalanced_in_call = 0, None

    def other_member() -> None:
        join.wait(60)
        other = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        other.subscribe([topic])
        while not stop.is_set():
            other.poll(0.1)
        other.close()

    joiner = threading.Thread(target=other_member)
    joiner.start()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    try:
        # Nothing is queued: the first call returns none, the second waits for this record.
        def produce_soon() -> None:
            time.sleep(0.5)
            producer.produce(topic, b"first")
            producer.flush(10)

        threading.Thread(target=produce_soon).start()
        messages = consume_available(consumer, 500, TIMEOUT_S, lambda: consumer.rebalances)
        assert consumer.rebalanced_in_call == 3, "the rebalance did not come between the calls"
        # The record belongs to the assignment the rebalance replaced: whoever owns its
        # partition now reads it from the committed offset.
        assert [m.value() for m in messages] == []
    finally:
        stop.set()
        joiner.join(30)
        consumer.close()
