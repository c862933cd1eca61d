"""The ports, measured: each wraps the real adapter and records durations and outcomes.

The services never see metrics; the entrypoints wrap the adapters they hand in. Futures are
measured with a done-callback (no extra task per write), and label children are bound once;
publishes are told to `PublishMetrics` by the Kafka publisher as it settles them.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from pedidos.ports import (
    Mailer,
    OrderIndex,
    OutgoingEmail,
    PermanentMailError,
    TransientMailError,
)

# Seconds; the OTel default buckets with finer steps under 5 ms, where a local send sits.
FAST_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)


def messaging_metrics(registry: CollectorRegistry) -> tuple[Histogram, Counter]:
    """OTel's messaging client metrics for publishes, as PublishMetrics records them."""
    duration = Histogram(
        "messaging_client_operation_duration_seconds",
        "Publish to broker acknowledgement.",
        ["messaging_system", "messaging_operation_name", "messaging_destination_name"],
        buckets=FAST_BUCKETS,
        registry=registry,
    )
    sent = Counter(
        "messaging_client_sent_messages",
        "Records published, by topic; error_type set on those the broker did not take.",
        [
            "messaging_system",
            "messaging_operation_name",
            "messaging_destination_name",
            "error_type",
        ],
        registry=registry,
    )
    return duration, sent


def _timed(future: asyncio.Future[Any], histogram: Histogram, failures: Counter | None) -> None:
    start = perf_counter()

    def done(finished: asyncio.Future[Any]) -> None:
        histogram.observe(perf_counter() - start)
        if failures is not None and (finished.cancelled() or finished.exception() is not None):
            failures.inc()

    future.add_done_callback(done)


class MeasuredMailer:
    """E-mails by result: `sent`, `retried` (a transient failure the walk retries) or
    `rejected` (refused for good), and the duration of every attempt."""

    def __init__(self, mailer: Mailer, duration: Histogram, results: Counter) -> None:
        self._mailer = mailer
        self._duration = duration
        self._sent = results.labels(result="sent")
        self._retried = results.labels(result="retried")
        self._rejected = results.labels(result="rejected")

    async def send_async(self, message: OutgoingEmail) -> None:
        start = perf_counter()
        try:
            await self._mailer.send_async(message)
        except PermanentMailError:
            self._rejected.inc()
            raise
        except TransientMailError:
            self._retried.inc()
            raise
        finally:
            self._duration.observe(perf_counter() - start)
        self._sent.inc()


class MeasuredIndex:
    """The duration of each document write as the step waits for it (batched writes included),
    the ledger's events apart from the current states, and the writes that failed."""

    def __init__(
        self, index: OrderIndex, ledger: Histogram, current_state: Histogram, failures: Counter
    ) -> None:
        self._index = index
        self._ledger = ledger
        self._current_state = current_state
        self._failures = failures

    def recorded_event(self, order_id: str, state: str) -> asyncio.Future[dict[str, Any] | None]:
        return self._index.recorded_event(order_id, state)

    def write_event(self, doc: dict[str, Any]) -> asyncio.Future[None]:
        future = self._index.write_event(doc)
        _timed(future, self._ledger, self._failures)
        return future

    def write_order(self, doc: dict[str, Any]) -> asyncio.Future[None]:
        future = self._index.write_order(doc)
        _timed(future, self._current_state, self._failures)
        return future

    def hurry(self) -> None:
        self._index.hurry()

    def hurry_ledger(self) -> None:
        self._index.hurry_ledger()

    def hurry_lookups(self) -> None:
        self._index.hurry_lookups()


class PublishMetrics:
    """Publish → broker acknowledgement, per topic, as OTel's messaging client metrics name it:
    `messaging_client_operation_duration_seconds` and `messaging_client_sent_messages_total`
    (with `error_type` set on the ones the broker did not take). The Kafka publisher tells it
    of each answer as it settles them (its `observer`), so no future carries a callback for it;
    `also` times the same publishes again (the consumer's publish phase)."""

    def __init__(self, duration: Histogram, sent: Counter, also: Histogram | None = None) -> None:
        self._duration = duration
        self._sent = sent
        self._also = also
        self._children: dict[str, tuple[Any, Any, Any]] = {}

    def _bound(self, topic: str) -> tuple[Any, Any, Any]:
        children = self._children.get(topic)
        if children is None:
            labels = {
                "messaging_system": "kafka",
                "messaging_operation_name": "send",
                "messaging_destination_name": topic,
            }
            children = (
                self._duration.labels(**labels),
                self._sent.labels(**labels, error_type=""),
                self._sent.labels(**labels, error_type="publish_error"),
            )
            self._children[topic] = children
        return children

    def settled(self, topic: str, seconds: float, failed: bool) -> None:
        duration, sent, refused = self._bound(topic)
        duration.observe(seconds)
        if self._also is not None:
            self._also.observe(seconds)
        (refused if failed else sent).inc()
