"""KafkaRecordSource on Apache Kafka: a fetch hands over the records that are there instead of
waiting its whole timeout for a full batch (librdkafka's consume(n, timeout) does), so a lone
record — one order walking alone — is not held back at every step."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from devkit.stack import EmbeddedStack
from pedidos.adapters.kafka.record_source import KafkaRecordSource, consumer_config

pytestmark = pytest.mark.integration

# Far beyond any wait for one record; the old fetch returned only after all of it.
FETCH_TIMEOUT_S = 30.0


def test_a_lone_record_is_fetched_without_waiting_out_the_timeout(stack: EmbeddedStack) -> None:
    bootstrap = stack.env()["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"source-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the future
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)

    async def run() -> tuple[list[bytes | None], float]:
        source = KafkaRecordSource(consumer_config(bootstrap, f"g-{topic}", 6000), [topic])
        assigned = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_assign(_: list[tuple[str, int]]) -> None:
            loop.call_soon_threadsafe(assigned.set)

        await source.start(on_assign, lambda *_: None)
        try:
            while not assigned.is_set():
                await source.fetch(1, 0.2)
            producer = Producer({"bootstrap.servers": bootstrap})
            producer.produce(topic, value=b"alone")
            assert producer.flush(30) == 0
            started = time.monotonic()
            records = await source.fetch(500, FETCH_TIMEOUT_S)
            return [r.value for r in records], time.monotonic() - started
        finally:
            await source.close()

    values, took = asyncio.run(run())
    assert values == [b"alone"]
    assert took < FETCH_TIMEOUT_S / 2
