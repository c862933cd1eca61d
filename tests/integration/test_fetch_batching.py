"""CONSUMER_FETCH_MIN_BYTES / CONSUMER_FETCH_MAX_WAIT_MS reach the broker: with the default a
record is fetched as soon as it is stored; with a minimum no single record fills, the broker holds
the fetch for the whole wait."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import pytest
from confluent_kafka import Producer

from devkit.stack import EmbeddedStack
from devkit.topics import create_topic
from pedidos.adapters.kafka.record_source import FetchBatching, KafkaRecordSource, consumer_config

pytestmark = pytest.mark.integration

WAIT_MS = 400
ROUNDS = 4


async def _delays(bootstrap: str, topic: str, fetch: FetchBatching) -> list[float]:
    """Seconds from producing one record to fetching it, for records sent one at a time, each
    right after the previous one arrived (when the consumer's next fetch has just gone out)."""
    assigned: list[tuple[str, int]] = []
    group = f"g-{uuid.uuid4().hex[:8]}"
    source = KafkaRecordSource(consumer_config(bootstrap, group, 6000, fetch=fetch), [topic])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    await source.start(lambda partitions: assigned.extend(partitions), lambda *_: None)
    try:
        deadline = time.monotonic() + 30
        while not assigned:
            assert time.monotonic() < deadline, "never assigned"
            await source.fetch(10, 0.1)
        delays = []
        for n in range(ROUNDS + 1):
            began = time.perf_counter()
            producer.produce(topic, f"r{n}".encode(), partition=0)
            assert producer.flush(10) == 0
            fetched: list[object] = []
            while not fetched:
                assert time.perf_counter() - began < 10, f"record {n} never fetched"
                fetched = list(await source.fetch(10, 0.01))
            if n:  # the first fetch after the assignment may already be waiting
                delays.append(time.perf_counter() - began)
        return delays
    finally:
        await source.close()


def test_a_fetch_minimum_holds_a_lone_record_for_the_wait_and_the_default_does_not(
    stack: EmbeddedStack,
) -> None:
    bootstrap = stack.env()["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"fetch-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 1)

    default = asyncio.run(_delays(bootstrap, topic, FetchBatching()))
    batched = asyncio.run(_delays(bootstrap, topic, FetchBatching(1024 * 1024, WAIT_MS)))

    # At the first record: well under the wait (librdkafka's default wait is 500 ms).
    assert statistics.median(default) < 0.25 * WAIT_MS / 1000, default
    # No single record fills a megabyte: each waits out (most of) the broker's hold.
    assert statistics.median(batched) > 0.6 * WAIT_MS / 1000, batched
