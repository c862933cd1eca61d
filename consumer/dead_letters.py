"""What can never be processed goes to the dead-letter topic, with the reason and its source."""

from __future__ import annotations

import logging

from consumer.metrics import ConsumerMetrics
from pedidos.ports import Publisher
from pedidos.runtime.retry import Backoff, retry_async

log = logging.getLogger(__name__)


class DeadLetters:
    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        backoff: Backoff | None = None,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self._metrics = metrics or ConsumerMetrics()
        self._publisher = publisher
        self._topic = topic
        self._backoff = backoff or Backoff(initial_s=0.2, max_s=10.0)

    async def send(
        self,
        kind: str,
        key: str,
        value: bytes,
        error: str,
        source: str = "",
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Publishes until the broker takes it: a dead letter is never dropped."""
        all_headers = [
            *(headers or []),
            ("pedidos-dlq-kind", kind.encode()),
            ("pedidos-error", error[:1000].encode()),
            ("pedidos-source", source.encode()),
        ]

        async def publish() -> None:
            await self._publisher.publish(self._topic, key, value, all_headers)

        await retry_async(
            "dead-letter publish",
            publish,
            retry_on=(Exception,),
            backoff=self._backoff,
            logger=log,
        )
        self._metrics.dead_lettered(kind)

    async def for_walk(self, kind: str, key: str, value: bytes, error: str) -> None:
        """The order walk's dead letters (refused e-mails) have no source record."""
        await self.send(kind, key, value, error)
