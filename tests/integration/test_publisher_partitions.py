"""KafkaPublisher on Apache Kafka: the key picks the partition unless one is named, and a named
partition the topic lacks is a PublishError that says so (the consumer then falls back). Each
answer is told to the observer, the metrics' source."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from devkit.stack import EmbeddedStack
from devkit.topics import create_topic
from pedidos.adapters.kafka.publisher import KafkaPublisher, PublishError, producer_config
from tests.unit.test_kafka_publisher import Observer

pytestmark = pytest.mark.integration


def test_key_named_and_missing_partitions(stack: EmbeddedStack) -> None:
    bootstrap = stack.env()["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"partitions-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 3)

    observer = Observer()

    async def run() -> tuple[list[int], list[int], PublishError]:
        publisher = KafkaPublisher(producer_config(bootstrap, "test", 10), observer)
        try:
            keyed = [
                (await publisher.publish(topic, "pedido-1", b"{}", [])).partition for _ in "ab"
            ]
            named = [
                (await publisher.publish(topic, "pedido-1", b"{}", [], p)).partition
                for p in (0, 1, 2)
            ]
            with pytest.raises(PublishError) as missing:
                await publisher.publish(topic, "pedido-1", b"{}", [], 7)
            assert publisher.awaiting == 0
            return keyed, named, missing.value
        finally:
            publisher.close()

    keyed, named, missing = asyncio.run(run())
    assert len(set(keyed)) == 1  # the same key, the same partition
    assert named == [0, 1, 2]
    assert missing.unknown_partition
    assert [(t, failed) for t, _, failed in observer.answers] == [(topic, False)] * 5 + [
        (topic, True)
    ]
    assert all(0 <= seconds < 10 for _, seconds, _ in observer.answers)
