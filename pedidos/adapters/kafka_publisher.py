"""Idempotent Kafka producer whose deliveries are awaitable futures."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

log = logging.getLogger(__name__)


class PublishError(Exception):
    """The broker did not acknowledge the record; nothing may be reported as done."""


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str
    partition: int
    offset: int


def producer_config(bootstrap_servers: str, client_id: str, timeout_s: float) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "compression.type": "lz4",
        # Java-compatible key hashing: every client puts an order on the same partition.
        "partitioner": "murmur2_random",
        # After this librdkafka gives up on a record, so a failed RPC is not delivered later.
        "message.timeout.ms": int(timeout_s * 1000),
        "queue.buffering.max.messages": 200_000,
    }


class KafkaPublisher:
    def __init__(self, config: dict[str, Any]) -> None:
        self._producer = Producer({**config, "error_cb": self._on_error})
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    @staticmethod
    def _on_error(error: KafkaError) -> None:
        # Transport errors are retried by librdkafka; a fatal one ends idempotent production.
        level = logging.ERROR if error.fatal() else logging.WARNING
        log.log(level, "kafka producer: %s", error.str())

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def publish(
        self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Delivery]:
        """Queue one record; the future resolves when the broker acknowledged it (acks=all)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivery] = loop.create_future()

        def settle(error: KafkaError | None, message: Message) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(PublishError(error.str()))
            else:
                future.set_result(
                    Delivery(
                        str(message.topic()),
                        int(message.partition() or 0),
                        int(message.offset() or 0),
                    )
                )

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            loop.call_soon_threadsafe(settle, error, message)

        try:
            self._producer.produce(
                topic,
                key=key.encode(),
                value=value,
                headers=list(headers),
                on_delivery=on_delivery,
            )
        except BufferError:
            future.set_exception(PublishError("local produce queue is full"))
        except KafkaException as exc:
            future.set_exception(PublishError(str(exc)))
        return future

    def flush(self, timeout_s: float) -> int:
        """Wait for queued records; returns how many are still undelivered."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 10) -> int:
        remaining = self.flush(timeout_s)
        self._stop.set()
        self._poller.join(timeout=1)
        return remaining
