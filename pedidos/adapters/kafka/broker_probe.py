"""Is the broker reachable? One metadata request for the service's topic, for `/readyz`."""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient


class BrokerProbe:
    def __init__(
        self, bootstrap_servers: str, topic: str, timeout_s: float = 2.0, cache_s: float = 2.0
    ) -> None:
        self._admin = AdminClient({"bootstrap.servers": bootstrap_servers})
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._checked_at = -cache_s
        self._verdict = (False, "not checked yet")

    def __call__(self) -> tuple[bool, str]:
        """Cached for `cache_s`: probes every few seconds from several scrapers cost one."""
        with self._lock:
            if time.monotonic() - self._checked_at >= self._cache_s:
                self._verdict = self._check()
                self._checked_at = time.monotonic()
            return self._verdict

    def _check(self) -> tuple[bool, str]:
        try:
            # Every topic's metadata: asking for one by name may auto-create it on some brokers.
            metadata = self._admin.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            return False, f"Kafka at {self._bootstrap_servers} unreachable: {exc}"
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None:
            why = topic.error.str() if topic is not None and topic.error else "missing"
            return False, f"topic {self._topic}: {why}"
        return True, "ok"
