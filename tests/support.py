"""Test helpers: service processes, and readers for what landed in Kafka, the inbox and ES."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import grpc
from confluent_kafka import Consumer
from elasticsearch import Elasticsearch

from pedidos.domain.states import ALL_STATES
from pedidos.v1 import orders_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
STATE_SLUGS = [s.slug for s in ALL_STATES]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class ServiceProcess:
    """`python -m <module>` as a real child process, with its log kept for assertions."""

    def __init__(self, module: str, env: dict[str, str], log_dir: Path) -> None:
        self.module = module
        self.env = env
        self.log_path = log_dir / f"{module}-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 30, count: int = 1) -> None:
        wait_for(lambda: self.log().count(text) >= count, timeout, f"{self.module} to log {text!r}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"{self.module} did not stop on SIGTERM within {timeout}s"
            ) from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def read_topic(
    bootstrap: str, topic: str, min_count: int, timeout: float = 20, settle_s: float = 1.0
) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Every record of `topic` (waits for at least `min_count`, then `settle_s` for extras)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    deadline = time.monotonic() + timeout
    quiet_until: float | None = None
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(500, 0.2):
                if message.error() is None:
                    records.append((message.key(), message.value(), list(message.headers() or [])))
            if len(records) >= min_count:
                quiet_until = quiet_until or time.monotonic() + settle_s
                if time.monotonic() >= quiet_until:
                    break
    finally:
        consumer.close()
    return records


@dataclass(frozen=True, slots=True)
class _Mail:
    arrival: tuple[int, int, int]
    order_id: str | None
    state: str
    path: Path


class _MaildirIndex:
    """The headers of every message in one Maildir, each file read once: a poll lists the
    directory and parses only the files it has not seen (the session's Maildir grows large)."""

    def __init__(self, maildir: Path) -> None:
        self._new = maildir / "new"
        self._parser = BytesHeaderParser(policy=default_policy)
        self._mails: dict[str, _Mail] = {}
        self._in_order: list[_Mail] = []
        self._lock = threading.Lock()

    def _read(self, name: str) -> _Mail | None:
        path = self._new / name
        try:
            with open(path, "rb") as handle:
                headers = self._parser.parse(handle)
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:  # removed since the listing
            return None
        # Maildir names: <seconds>.M<microseconds>P<pid>Q<counter>.<host>
        seconds, _, rest = name.partition(".")
        micro = rest[1:].split("P", 1)[0] if rest.startswith("M") else "0"
        order_id = headers.get("X-Pedidos-Order-Id")
        return _Mail(
            (int(seconds), int(micro or 0), mtime),
            None if order_id is None else str(order_id),
            str(headers.get("X-Pedidos-State")),
            path,
        )

    def mails(self) -> list[_Mail]:
        """Every message, in arrival order."""
        with self._lock:
            try:
                names = set(os.listdir(self._new))
            except FileNotFoundError:
                names = set()
            changed = False
            for gone in self._mails.keys() - names:  # a Maildir emptied by hand
                del self._mails[gone]
                changed = True
            for name in names - self._mails.keys():
                mail = self._read(name)
                if mail is not None:
                    self._mails[name] = mail
                    changed = True
            if changed:
                self._in_order = sorted(self._mails.values(), key=lambda mail: mail.arrival)
            return self._in_order


_MAILDIR_INDEXES: dict[Path, _MaildirIndex] = {}
_MAILDIR_INDEXES_LOCK = threading.Lock()


class Inbox:
    """Reads the mail sink's Maildir: which state e-mails each order received, in arrival order.

    Every Inbox of one Maildir shares one index, so a poll reads only the messages that arrived
    since the previous poll of any of them."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        with _MAILDIR_INDEXES_LOCK:
            self._index = _MAILDIR_INDEXES.setdefault(maildir.resolve(), _MaildirIndex(maildir))

    def states_by_order(self, order_ids: Iterable[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        for order_id, state in self.arrivals(order_ids):
            found[order_id].append(state)
        return found

    def arrivals(self, order_ids: Iterable[str]) -> list[tuple[str, str]]:
        """(order id, state slug) of every e-mail of these orders, in arrival order."""
        wanted = set(order_ids)
        return [
            (mail.order_id, mail.state)
            for mail in self._index.mails()
            if mail.order_id is not None and mail.order_id in wanted
        ]

    def messages_for(self, order_id: str) -> list[bytes]:
        return [mail.path.read_bytes() for mail in self._index.mails() if mail.order_id == order_id]


def search_docs(es_url: str, index: str, order_ids: Iterable[str]) -> list[dict[str, Any]]:
    es = Elasticsearch(es_url)
    try:
        es.indices.refresh(index=index)
        ids = list(order_ids)
        docs: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            response = es.search(
                index=index,
                query={"terms": {"order_id": ids[start : start + 500]}},
                size=10_000,
            )
            docs.extend({"_id": h["_id"], **h["_source"]} for h in response["hits"]["hits"])
        return docs
    finally:
        es.close()


class TcpCutter:
    """A loopback TCP forwarder that can be cut (refuse and drop connections) and restored.

    It takes a server away from its clients without restarting the server, for outage tests
    against servers whose own restart is not what is being tested.
    """

    def __init__(self, target_port: int) -> None:
        import asyncio
        import threading

        from admin.stack import free_port

        self.port = free_port()
        self._target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self.restore()

    async def _pipe(self, reader: Any, writer: Any) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: Any, writer: Any) -> None:
        import asyncio

        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self._target_port
            )
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )
        self._writers -= {writer, upstream_writer}

    def _run(self, coroutine: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def restore(self) -> None:
        import asyncio

        async def listen() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

        self._run(listen())

    def cut(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

        self._run(close())


async def start_order_service(servicer: Any) -> tuple[grpc.aio.Server, str]:
    """An in-process OrderService (a test fake) on a port the OS picks; the caller stops it."""
    server = grpc.aio.server()
    orders_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def publish_order_records(
    bootstrap: str, topic: str, count: int, email: str = "comprador@example.cl"
) -> list[str]:
    """Publishes `count` accepted orders on `topic` as the producer does; their order ids.

    For tests of the consumer alone: the same records, without a producer process.
    """
    from confluent_kafka import Producer

    from pedidos.domain.order import Order, OrderDetails, utc_now
    from pedidos.wire.records import ORDER_SCHEMA, encode_order_accepted, headers_for

    details = OrderDetails.create(
        product_name="Silla Gamer",
        price_minor=129_990,
        currency="CLP",
        payment_gateway="MERCADO_PAGO",
        card_brand="VISA",
        bank="Banco de Chile",
        shipping_region="Región Metropolitana",
        shipping_address="Calle Pajaritos 300, Maipú",
        customer_email=email,
    )
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    order_ids = []
    for _ in range(count):
        order = Order(order_id=str(uuid.uuid4()), details=details, accepted_at=utc_now())
        producer.produce(
            topic,
            key=order.order_id.encode(),
            value=encode_order_accepted(order),
            headers=headers_for(ORDER_SCHEMA, order.order_id),
        )
        order_ids.append(order.order_id)
    assert producer.flush(30) == 0, "Kafka did not take the order records"
    return order_ids


def topic_size(bootstrap: str, topic: str) -> int:
    """How many records `topic` holds (its end offsets; exact on Apache Kafka)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"size-{uuid.uuid4()}"})
    try:
        from confluent_kafka import TopicPartition

        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()
