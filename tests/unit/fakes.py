"""In-memory stand-ins for the ports, shared by the unit tests (integration tests use real servers).

Each fake records what it was asked to do, so tests assert on effects rather than on calls.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pedidos.adapters.kafka.record_source import ConsumedRecord
from pedidos.adapters.smtp_mailer import SmtpConnection
from pedidos.domain.order import Order
from pedidos.ports import LookupUnavailable, OutgoingEmail

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def done(value: Any = None) -> asyncio.Future[Any]:
    """An already resolved future, as the adapters return for work they finished at once."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class FakeClock:
    """Wall time that moves only when told to (or when something sleeps on it)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        """Lets the time pass at once; yields to the loop like a real sleep."""
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


class FakeMailer:
    """Fails with `failures` in turn (then with `always`, if given), then takes every e-mail."""

    def __init__(
        self, *failures: Exception, always: Exception | None = None, delay_s: float = 0.01
    ) -> None:
        self.failures = list(failures)
        self.always = always
        self.delay_s = delay_s
        self.sent: list[OutgoingEmail] = []
        self.attempts = 0

    def send(self, message: OutgoingEmail) -> None:
        self.attempts += 1
        if self.always is not None:
            raise self.always
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)

    async def send_async(self, message: OutgoingEmail) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.send(message)


class FakeIndex:
    """The Elasticsearch ledger: event documents keep their first version, as `create` does."""

    def __init__(self, write_delay_s: float = 0.0) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.write_delay_s = write_delay_s
        self.hurried = 0  # calls to hurry()
        self.hurried_lookups = 0  # calls to hurry_lookups()
        self.pending_events = 0  # slow event writes not yet stored
        self.hurried_pending: list[int] = []  # `pending_events` at each call to hurry()
        # `pending_events` at each call to hurry_ledger()
        self.hurried_ledger_pending: list[int] = []

    def recorded_event(self, order_id: str, state: str) -> asyncio.Future[dict[str, Any] | None]:
        return done(self.events.get(f"{order_id}:{state}"))

    def write_event(self, doc: dict[str, Any]) -> asyncio.Future[None]:
        if not self.write_delay_s:
            self.events.setdefault(f"{doc['order_id']}:{doc['state']}", doc)
            return done()

        async def slow() -> None:
            await asyncio.sleep(self.write_delay_s)
            self.events.setdefault(f"{doc['order_id']}:{doc['state']}", doc)
            self.pending_events -= 1

        self.pending_events += 1
        return asyncio.ensure_future(slow())

    def write_order(self, doc: dict[str, Any]) -> asyncio.Future[None]:
        self.orders[doc["order_id"]] = doc
        return done()

    def hurry(self) -> None:
        self.hurried += 1
        self.hurried_pending.append(self.pending_events)

    def hurry_ledger(self) -> None:
        self.hurried_ledger_pending.append(self.pending_events)

    def hurry_lookups(self) -> None:
        self.hurried_lookups += 1


class FakePublisher:
    """Acknowledges every record at once; `fail_with` makes the next publishes fail instead.

    With `feed`, records on the topics it reads are queued on it too, as a broker would deliver
    them (a record without a partition goes to partition 0), so a consumer reads back its own
    state records. Records on the `unanswered` topics are never answered (a broker gone)."""

    def __init__(
        self,
        *fail_with: Exception,
        feed: FakeRecordSource | None = None,
        unanswered: frozenset[str] = frozenset(),
    ) -> None:
        self.records: list[tuple[str, str, bytes, list[tuple[str, bytes]]]] = []
        self.partitions: list[int | None] = []
        self.fail_with = list(fail_with)
        self.feed = feed
        self.unanswered = unanswered

    def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        if topic in self.unanswered:
            return asyncio.get_running_loop().create_future()
        if self.fail_with:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(self.fail_with.pop(0))
            return future
        self.records.append((topic, key, value, headers))
        self.partitions.append(partition)
        if self.feed is not None and topic in self.feed.topics:
            self.feed.add(topic, partition or 0, value, key, headers)
        return done()

    def on(self, topic: str) -> list[tuple[str, str, bytes, list[tuple[str, bytes]]]]:
        return [r for r in self.records if r[0] == topic]


TopicPartition = tuple[str, int]
PartitionsCallback = Callable[[list[TopicPartition]], None]
RevokeCallback = Callable[[list[TopicPartition], bool], None]


class FakeRecordSource:
    """A Kafka consumer in memory: the test assigns and revokes partitions and queues records.

    Rebalance callbacks run on another thread, as librdkafka runs them on the consumer thread
    (a revoke blocks it while in-flight steps finish on the event loop)."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = frozenset(topics)
        self._on_assign: PartitionsCallback | None = None
        self._on_revoke: RevokeCallback | None = None
        self.queued: list[ConsumedRecord] = []
        self.assigned: set[TopicPartition] = set()
        self.paused: frozenset[str] = frozenset()
        self.pauses: list[frozenset[str]] = []
        # The last committed offset per partition, and every commit call in order.
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[list[tuple[str, int, int]]] = []
        self.fetch_sizes: list[int] = []
        self.started = self.closed = False
        self._next_offset: dict[TopicPartition, int] = {}

    def add(
        self,
        topic: str,
        partition: int,
        value: bytes | None,
        key: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> ConsumedRecord:
        offset = self._next_offset.get((topic, partition), 0)
        self._next_offset[(topic, partition)] = offset + 1
        record = ConsumedRecord(
            topic, partition, offset, key.encode() if key else None, value, headers or []
        )
        self.queued.append(record)
        return record

    async def assign(self, partitions: list[TopicPartition]) -> None:
        assert self._on_assign is not None
        self.assigned.update(partitions)
        await asyncio.to_thread(self._on_assign, partitions)

    async def revoke(self, partitions: list[TopicPartition], lost: bool = False) -> None:
        assert self._on_revoke is not None
        await asyncio.to_thread(self._on_revoke, partitions, lost)
        self.assigned.difference_update(partitions)
        # Records not yet fetched go to the partition's next owner.
        self.queued = [r for r in self.queued if (r.topic, r.partition) not in partitions]

    async def start(self, on_assign: PartitionsCallback, on_revoke: RevokeCallback) -> None:
        self._on_assign, self._on_revoke = on_assign, on_revoke
        self.started = True

    async def fetch(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        self.fetch_sizes.append(max_records)
        out: list[ConsumedRecord] = []
        for record in list(self.queued):
            if len(out) >= max_records:
                break
            if record.topic in self.paused or (record.topic, record.partition) not in self.assigned:
                continue
            self.queued.remove(record)
            out.append(record)
        await asyncio.sleep(0 if out else 0.001)
        return out

    def commit_now(self, offsets: list[tuple[str, int, int]], wait: bool = True) -> None:
        if offsets:
            self.commits.append(list(offsets))
        for topic, partition, offset in offsets:
            self.committed[(topic, partition)] = offset

    async def commit(self, offsets: list[tuple[str, int, int]], wait: bool = True) -> None:
        self.commit_now(offsets, wait)

    def busy(self) -> tuple[str, float] | None:
        return None  # never stuck: no thread

    async def pause_topics(self, topics: frozenset[str]) -> None:
        self.paused = topics
        self.pauses.append(topics)

    async def close(self) -> None:
        self.closed = True


# -- producer side: intake and tracking ------------------------------------------------------


class FakePendingPublisher:
    """A broker that has not answered yet: every delivery waits for the test to `ack` or `fail`
    it, so tests see what happens while an order is in flight."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, bytes, list[tuple[str, bytes]]]] = []
        self.deliveries: list[asyncio.Future[Any]] = []

    def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        self.records.append((topic, key, value, headers))
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]

    def ack(self, index: int = -1) -> None:
        self.deliveries[index].set_result(None)

    def fail(self, error: Exception, index: int = -1) -> None:
        self.deliveries[index].set_exception(error)


class FakeOrderLookup:
    """The current-state index as GetOrder reads it: `orders` by id; `down` makes it unreachable."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.down = False
        self.calls = 0

    async def find(self, order_id: str) -> Order | None:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise LookupUnavailable("Elasticsearch unreachable (ConnectionError)")
        return self.orders.get(order_id)


class FakeSmtpConnection(SmtpConnection):
    """An smtplib connection to a server without PIPELINING, with no socket behind it:
    subclasses answer `deliver` (what smtplib's sendmail would do with one e-mail)."""

    def __init__(self) -> None:
        super().__init__()
        self.sock = socket.socket()  # open, as far as the mailer can tell
        self.closed = False

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: object,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        recipient = to_addrs if isinstance(to_addrs, str) else to_addrs[0]
        assert isinstance(msg, bytes)
        self.deliver(recipient, msg)
        return {}

    def deliver(self, recipient: str, data: bytes) -> None:
        raise NotImplementedError

    def ehlo_or_helo_if_needed(self) -> None:
        pass

    def has_extn(self, opt: str) -> bool:
        return False

    def rset(self) -> tuple[int, bytes]:
        return 250, b"OK"

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.closed = True

    def quit(self) -> tuple[int, bytes]:
        self.close()
        return 221, b"Bye"


class DeliveredMessage:
    """What librdkafka hands a delivery callback: where the record went. `offset` -1001
    (RD_KAFKA_OFFSET_INVALID) is what an implicit acknowledgement carries."""

    def __init__(self, partition: int, offset: int = 0, topic: str = "Pedidos.estados") -> None:
        self._where = (topic, partition, offset)

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]
