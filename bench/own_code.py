"""5d: the consumer's own code alone, its CPU per order (issue #18, what bounds the consumer).

The object graph `python -m consumer` runs (`consumer.app.wire_consumer`: loop, scheduler, walk,
renderer, records, documents, metrics, JSON log lines at the configured level) over in-memory
Kafka, Elasticsearch and SMTP: no client library, no socket, no other thread. What the end-to-end
consumer spends above this is its adapters, their servers' answers and the machine's sharing.

Runs in a process of its own, as the consumer does: `python -m bench.own_code ORDERS` walks
ORDERS orders through every state (the settings from the environment, as the consumer's, but
stage delays 0) and prints one JSON line on stdout; the log lines go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from bench.figures import Figure
from bench.limits import produce_all
from consumer.app import order_index, record_source, state_publisher, wire_consumer
from consumer.loop import RecordSource
from consumer.metrics import ConsumerMetrics
from devkit.orders import order_records
from pedidos.adapters.kafka.publisher import LingerWhenBusy, producer_config
from pedidos.adapters.kafka.record_source import ConsumedRecord
from pedidos.adapters.smtp_mailer import SmtpMailer, smtp_settings
from pedidos.domain.states import OrderState
from pedidos.ports import Mailer, OrderIndex, OutgoingEmail, Publisher
from pedidos.runtime.config import Settings, load_settings
from pedidos.runtime.event_loop import event_loop_factory
from pedidos.runtime.heap import settle_heap
from pedidos.runtime.logs import configure_logging

TopicPartition = tuple[str, int]
# The wall time a run may take; at ~1 ms of CPU per order even 100,000 orders fit.
RUN_TIMEOUT_S = 600.0
# The adapters a run may make real (--real), each against its server in the environment.
ADAPTERS = ("smtp", "es", "kafka")
# The bench's runs: none real (the figure), each alone, then all three (the consumer itself).
OWN_CODE_VARIANTS: tuple[tuple[str, frozenset[str]], ...] = (
    ("memory", frozenset()),
    *((name, frozenset({name})) for name in ADAPTERS),
    ("all", frozenset(ADAPTERS)),
)


def _settled(value: Any = None) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class MemoryTopics:
    """The consumer's Kafka in memory: one partition per topic; a record published on a topic
    it reads is fetched back, as the state records are through the broker."""

    def __init__(self, topics: list[str]) -> None:
        self._topics = frozenset(topics)
        self._queues: dict[str, deque[ConsumedRecord]] = {t: deque() for t in topics}
        self._next_offset = dict.fromkeys(topics, 0)
        self._paused: frozenset[str] = frozenset()
        self._arrived = asyncio.Event()

    @property
    def topics(self) -> frozenset[str]:
        return self._topics

    def add(self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        offset = self._next_offset[topic]
        self._next_offset[topic] = offset + 1
        self._queues[topic].append(ConsumedRecord(topic, 0, offset, key.encode(), value, headers))
        self._arrived.set()

    # -- RecordSource ----------------------------------------------------------------------
    async def start(
        self,
        on_assign: Callable[[list[TopicPartition]], None],
        on_revoke: Callable[[list[TopicPartition], bool], None],
    ) -> None:
        on_assign([(topic, 0) for topic in sorted(self._topics)])

    async def fetch(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        if not any(self._queues[t] for t in self._topics - self._paused):
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout_s)
            except TimeoutError:
                return []
        out: list[ConsumedRecord] = []
        for topic in sorted(self._topics - self._paused, reverse=True):  # states first
            queue = self._queues[topic]
            while queue and len(out) < max_records:
                out.append(queue.popleft())
        return out

    # Offsets are not kept: nothing here restarts from them.
    def commit_now(self, offsets: list[tuple[str, int, int]], wait: bool = True) -> None:
        return None

    async def commit(self, offsets: list[tuple[str, int, int]], wait: bool = True) -> None:
        return None

    def busy(self) -> tuple[str, float] | None:
        return None  # never stuck: no thread

    async def pause_topics(self, topics: frozenset[str]) -> None:
        self._paused = topics
        self._arrived.set()

    async def close(self) -> None:
        return None

    # -- Publisher: acknowledged at once ----------------------------------------------------
    def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        if topic in self._topics:
            self.add(topic, key, value, headers)
        return _settled()


class MemoryIndex:
    """The two indices, keeping what the ledger read needs of each event (the consumer's own
    objects, not a growing store of documents, are what the collector walks)."""

    def __init__(self) -> None:
        # (order, state) -> the event's @timestamp, accepted_at and email_status
        self.events: dict[str, tuple[str, str, str]] = {}

    def recorded_event(self, order_id: str, state: str) -> asyncio.Future[dict[str, Any] | None]:
        found = self.events.get(f"{order_id}:{state}")
        if found is None:
            return _settled(None)
        timestamp, accepted_at, email_status = found
        return _settled(
            {"@timestamp": timestamp, "accepted_at": accepted_at, "email_status": email_status}
        )

    def write_event(self, doc: dict[str, Any]) -> asyncio.Future[None]:
        fields = (doc["@timestamp"], doc["accepted_at"], doc["email_status"])
        self.events.setdefault(f"{doc['order_id']}:{doc['state']}", fields)
        return _settled()

    def write_order(self, doc: dict[str, Any]) -> asyncio.Future[None]:
        return _settled()

    def hurry(self) -> None:
        return None

    def hurry_ledger(self) -> None:
        return None

    def hurry_lookups(self) -> None:
        return None


class CountedIndex:
    """Counts the documents `inner` stored (once their write resolved); `finished` is set once
    `orders` orders have their last state stored."""

    def __init__(self, inner: OrderIndex, orders: int) -> None:
        self.inner = inner
        self.events = 0
        self.order_writes = 0
        self._unfinished = orders
        self.finished = asyncio.Event()

    def recorded_event(self, order_id: str, state: str) -> asyncio.Future[dict[str, Any] | None]:
        return self.inner.recorded_event(order_id, state)

    def write_event(self, doc: dict[str, Any]) -> asyncio.Future[None]:
        written = self.inner.write_event(doc)
        written.add_done_callback(self._event_written)
        return written

    def write_order(self, doc: dict[str, Any]) -> asyncio.Future[None]:
        written = self.inner.write_order(doc)
        final = doc["state"] == OrderState.FINALIZADO.value
        written.add_done_callback(partial(self._order_written, final))
        return written

    def hurry(self) -> None:
        self.inner.hurry()

    def hurry_ledger(self) -> None:
        self.inner.hurry_ledger()

    def hurry_lookups(self) -> None:
        self.inner.hurry_lookups()

    def _event_written(self, written: asyncio.Future[None]) -> None:
        if not written.cancelled() and written.exception() is None:
            self.events += 1

    def _order_written(self, final: bool, written: asyncio.Future[None]) -> None:
        if written.cancelled() or written.exception() is not None:
            return
        self.order_writes += 1
        if final:
            self._unfinished -= 1
            if not self._unfinished:
                self.finished.set()


class MemoryMailer:
    """Takes every e-mail at once."""

    async def send_async(self, message: OutgoingEmail) -> None:
        return None


class CountedMailer:
    """Counts the e-mails `inner` accepted, and their bytes."""

    def __init__(self, inner: Mailer) -> None:
        self.inner = inner
        self.sent = 0
        self.bytes = 0

    async def send_async(self, message: OutgoingEmail) -> None:
        await self.inner.send_async(message)
        self.sent += 1
        self.bytes += len(message.data)


def _publish_orders(settings: Settings, orders: int) -> None:
    """The orders on the broker before the consumer starts, as a backlog is."""
    producer = Producer(producer_config(settings.kafka_bootstrap_servers, "pedidos-bench", 30))
    records = order_records(seed=18, count=orders)
    deliveries = produce_all(producer, settings.pedidos_topic, records, time.monotonic() + 60)
    if problems := deliveries.problems("orders", orders):
        raise RuntimeError("; ".join(problems))


async def walk_orders(
    orders: int, timeout_s: float = RUN_TIMEOUT_S, real: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Walk `orders` orders through every state; the CPU from the consumer's start to the last
    order finished (a backlog walks interleaved: the first orders finish late, so there is no
    warm-up to leave out). `real` names the adapters (ADAPTERS) that are the consumer's own
    instead of in memory. Stage delays are 0 whatever the environment says: the orders are
    queued at once (with the consumer's default 0.5-2 s delays a walk costs ~40 % more per
    order, its steps spread out, and a run is no longer comparable with the bench's)."""
    settings = load_settings(stage_delay_min_s=0, stage_delay_max_s=0)
    metrics = ConsumerMetrics()
    smtp = SmtpMailer(smtp_settings(settings)) if "smtp" in real else None
    search = order_index(settings) if "es" in real else None
    index = CountedIndex(search or MemoryIndex(), orders)
    mailer = CountedMailer(smtp or MemoryMailer())
    source: RecordSource
    publisher: Publisher
    if "kafka" in real:
        _publish_orders(settings, orders)
        source, publisher = record_source(settings), state_publisher(settings, metrics)
    else:
        topics = MemoryTopics([settings.pedidos_topic, settings.pedidos_states_topic])
        for key, value, headers in order_records(seed=18, count=orders):
            topics.add(settings.pedidos_topic, key, value, headers)
        source, publisher = topics, topics
    parts = wire_consumer(
        settings, source=source, publisher=publisher, mailer=mailer, index=index, metrics=metrics
    )
    settle_heap()  # as run_consumer does once started
    cpu0, wall0 = time.process_time(), time.perf_counter()
    stop = asyncio.Event()
    running = asyncio.create_task(parts.loop.run(stop, grace_s=5.0))
    try:
        await asyncio.wait_for(index.finished.wait(), timeout_s)
        cpu1, wall1 = time.process_time(), time.perf_counter()
    finally:
        stop.set()
        await running
        if search is not None:
            await search.close()
        if smtp is not None:
            await asyncio.to_thread(smtp.close)
        if isinstance(publisher, LingerWhenBusy):
            await asyncio.to_thread(publisher.close, 10)
    states = len(OrderState)
    return {
        "orders": orders,
        "real": sorted(real),
        "cpu_ms_per_order": (cpu1 - cpu0) / orders * 1000,
        "wall_s": wall1 - wall0,
        "emails": mailer.sent,
        "email_bytes_mean": mailer.bytes // max(mailer.sent, 1),
        "events": index.events,
        "order_writes": index.order_writes,
        "expected": {"emails": orders * states, "events": orders * states},
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.own_code")
    parser.add_argument("orders", type=int, nargs="?", default=2000)
    parser.add_argument(
        "--real", default="", help=f"adapters that are real, comma-separated: {ADAPTERS}"
    )
    args = parser.parse_args(argv)
    real = frozenset(filter(None, args.real.split(",")))
    if not real <= set(ADAPTERS):
        parser.error(f"--real takes {', '.join(ADAPTERS)}")
    settings = load_settings()
    configure_logging("consumer", settings.log_level)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        result = runner.run(walk_orders(args.orders, real=real))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


def measure_own_code(
    figure: Figure,
    env: Mapping[str, str],
    orders: int,
    log_path: Path,
    real: frozenset[str] = frozenset(),
) -> None:
    """Run `python -m bench.own_code` with `env` (its log lines to `log_path`) into `figure`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        done = subprocess.run(
            [sys.executable, "-m", "bench.own_code", str(orders), "--real", ",".join(sorted(real))],
            cwd=Path(__file__).resolve().parents[1],  # bench is not an installed package
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=log,
            timeout=RUN_TIMEOUT_S + 60,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"bench.own_code exited {done.returncode}; its log: {log_path}")
    own_code_figure(figure, orjson.loads(done.stdout))


def own_code_figure(figure: Figure, result: Mapping[str, Any]) -> None:
    """Fill `figure` from a run's JSON line; a run that lost or repeated work is FAILED."""
    expected = result["expected"]
    problems = [
        f"{name}: {result[name]:,} of {want:,}"
        for name, want in expected.items()
        if result[name] != want
    ]
    figure.value = result["cpu_ms_per_order"]
    figure.details = dict(result)
    figure.notes.append(
        f"{result['orders']:,} orders queued at once, from the consumer's start, "
        f"{result['orders'] / result['wall_s']:,.0f} orders/s on one core; "
        f"e-mails of {result['email_bytes_mean']:,} bytes"
    )
    figure.refuse(problems)


if __name__ == "__main__":
    main(sys.argv[1:])
