"""Accepting orders: dedupe by idempotency key, publish, and report only what the broker acked.

Shared by CreateOrder, the CreateOrders stream and CreateOrderBatch. An order counts as accepted
only when its `delivery` future resolves, i.e. after the broker's ack (acks=all); the Kafka
publisher fails it after `message.timeout.ms`, so it always resolves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from time import monotonic
from typing import Any, Generic, TypeVar

from pedidos.domain.order import (
    InvalidOrder,
    Order,
    OrderDetails,
    new_order_id,
    utc_now,
    validate_idempotency_key,
)
from pedidos.ports import Publisher
from pedidos.services.errors import NotAcknowledged, OrderRejected, Reason
from pedidos.wire.records import ORDER_SCHEMA, encode_order_accepted, headers_for

log = logging.getLogger(__name__)

# How long a key is remembered by one producer process; see the README's idempotency notes.
IDEMPOTENCY_TTL_S = 24 * 3600


class Submission:
    """One order as published (or being published) by this process, shared by its retries.

    Up to PRODUCER_IDEMPOTENCY_KEYS of these stay in memory, so each keeps only what a retry needs:
    the id, the acceptance time, a fingerprint of the details, and the delivery.
    """

    __slots__ = ("accepted_at", "delivery", "fingerprint", "order_id")

    def __init__(self, order: Order, delivery: asyncio.Future[Any]) -> None:
        self.order_id = order.order_id
        self.accepted_at = order.accepted_at
        self.fingerprint = hash(order.details)
        self.delivery = delivery

    def failure(self) -> NotAcknowledged | None:
        """None once the broker acknowledged the order; otherwise why it is not accepted (a
        delivery still pending counts as timed out). Logged, since the caller only retries."""
        delivery = self.delivery
        if delivery.done() and not delivery.cancelled():
            error = delivery.exception()
            if error is None:
                return None
        else:
            error = TimeoutError()
        reason = "timed out" if isinstance(error, TimeoutError) else str(error)
        log.warning(
            "order not acknowledged by Kafka", extra={"order_id": self.order_id, "reason": reason}
        )
        return NotAcknowledged(
            f"Kafka did not acknowledge the order ({reason}); retry with the same idempotency_key"
        )


async def settle(submissions: Iterable[Submission], timeout_s: float) -> None:
    """Wait up to `timeout_s` for the broker's answer on every submission.

    One delivery at a time: most are settled by the time their turn comes (the broker acks them
    in batches), and a delivery nobody waits on schedules no callback when it resolves, where
    asyncio.wait() on a whole batch added and removed a callback on each of its futures and
    scheduled one per ack. asyncio.wait() neither cancels a delivery (retries of the same key
    share it) nor needs the extra hops of wait_for(shield(...))."""
    loop: asyncio.AbstractEventLoop | None = None
    deadline = 0.0
    for submission in submissions:
        delivery = submission.delivery
        if delivery.done():
            continue
        if loop is None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        await asyncio.wait((delivery,), timeout=remaining)


V = TypeVar("V")


class RecentKeys(Generic[V]):
    """The values (submissions) of the last `size` keys used (the least recently used forgotten
    first), each for `ttl_s` after it was stored.

    cachetools' TTLCache did the same with two linked structures and a link object per key:
    ~14 µs per keyed order to look up and store, against ~2 here. One difference: only the least
    recently used entries are dropped when expired, so a key read after newer ones were stored
    can hold its slot up to that much past its expiry; it is never returned once expired."""

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float] = monotonic) -> None:
        self._size = size
        self._ttl_s = ttl_s
        self._clock = clock
        self._values: OrderedDict[str, V] = OrderedDict()  # least recently used first
        # Apart from the values: an (expiry, value) tuple per key would be one more object for
        # the garbage collector to walk, as long as the key is remembered.
        self._expiry: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: str) -> V | None:
        value = self._values.get(key)
        if value is None:
            return None
        if self._expiry[key] <= self._clock():
            del self._values[key], self._expiry[key]
            return None
        self._values.move_to_end(key)
        return value

    def __setitem__(self, key: str, value: V) -> None:
        now = self._clock()
        values, expiry = self._values, self._expiry
        values[key] = value
        values.move_to_end(key)
        expiry[key] = now + self._ttl_s
        while len(values) > self._size:
            del expiry[values.popitem(last=False)[0]]
        # The least recently used ones, while expired.
        while values:
            oldest = next(iter(values))
            if expiry[oldest] > now:
                break
            del values[oldest], expiry[oldest]


@dataclass(frozen=True, slots=True)
class OrderIdSecrets:
    """The secret that keyed order ids are derived with, and during a rotation the previous one.

    Every replica derives with `previous` until `since`, then with `current`, so replicas
    restarted with the new configuration at different times agree on every id (README,
    "Security"). After `since`, a retry of a key this process accepted under `previous` is
    still found in its memory (`candidates`)."""

    current: bytes
    previous: bytes | None = None
    since: datetime | None = None

    def active(self, now: datetime) -> bytes:
        if self.previous is not None and (self.since is None or now < self.since):
            return self.previous
        return self.current

    def former(self, now: datetime) -> bytes | None:
        """The secret replaced at `since`, while retries of its ids may still come."""
        if self.previous is None or self.since is None or now < self.since:
            return None
        if (now - self.since).total_seconds() > IDEMPOTENCY_TTL_S:
            return None
        return self.previous


class OrderIntake:
    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        remembered_keys: int,
        secrets: OrderIdSecrets,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._clock = clock
        self._secrets = secrets
        self._recent: RecentKeys[Submission] = RecentKeys(remembered_keys, IDEMPOTENCY_TTL_S)
        # Requests answered from an earlier publish; read by the producer's metrics.
        self.replays = 0

    def order_id(self, customer_email: str, idempotency_key: str | None) -> str:
        """The id this intake gives an order now (random without a key)."""
        return new_order_id(customer_email, idempotency_key, self._secrets.active(self._clock()))

    def _known(self, order_id: str, details: OrderDetails, key: str) -> Submission | None:
        known = self._recent.get(order_id)
        if known is None and self._secrets.previous is not None:
            former = self._secrets.former(self._clock())
            if former is not None:
                known = self._recent.get(new_order_id(details.customer_email, key, former))
        return known

    def submit(
        self, details: OrderDetails, idempotency_key: str | None, correlation_id: str
    ) -> Submission:
        """Publish one validated order, or return the publish of an earlier request with the
        same key; raises OrderRejected. Does not wait for the ack (see `settle`)."""
        try:
            key = validate_idempotency_key(idempotency_key) if idempotency_key else None
        except InvalidOrder as exc:
            raise OrderRejected(Reason.INVALID, str(exc)) from None
        order_id = self.order_id(details.customer_email, key)
        if key is not None:
            known = self._known(order_id, details, key)
            # Reuse a publish that succeeded or is still in flight; a failed one is retried.
            if known is not None and not (known.delivery.done() and known.delivery.exception()):
                if known.fingerprint != hash(details):
                    raise OrderRejected(
                        Reason.CONFLICT, "idempotency_key was already used for a different order"
                    )
                self.replays += 1
                return known
        submission = self._publish(order_id, details, correlation_id)
        if key is not None:
            self._recent[order_id] = submission
        return submission

    def _publish(self, order_id: str, details: OrderDetails, correlation_id: str) -> Submission:
        order = Order(order_id=order_id, details=details, accepted_at=self._clock())
        delivery = self._publisher.publish(
            self._topic,
            key=order_id,
            value=encode_order_accepted(order),
            headers=headers_for(ORDER_SCHEMA, correlation_id),
        )
        return Submission(order, delivery)
