"""Accepting one order, shared by CreateOrder and CreateOrders: validate, dedupe by key, publish.

An order counts as accepted only when its `delivery` future resolves, i.e. after Kafka's ack
(acks=all); librdkafka fails it after `message.timeout.ms`, so it always resolves.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable

import grpc
from cachetools import TTLCache

from pedidos.adapters.kafka.publisher import KafkaPublisher
from pedidos.domain.order import (
    InvalidOrder,
    Order,
    OrderDetails,
    new_order_id,
    utc_now,
    validate_idempotency_key,
)
from pedidos.domain.states import FIRST_STATE
from pedidos.v1 import orders_pb2
from pedidos.wire.proto_mapping import details_from_proto, state_to_proto, timestamp
from pedidos.wire.records import ORDER_SCHEMA, encode_order_accepted, headers_for

log = logging.getLogger(__name__)

# How long a key is remembered by one producer process; see the README's idempotency notes.
IDEMPOTENCY_TTL_S = 24 * 3600
CORRELATION_HEADER = "x-correlation-id"
_FIRST_STATE = state_to_proto(FIRST_STATE)


class OrderRejected(Exception):
    """The order is refused for good (bad input, reused key); `code` tells the caller why."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Accepted:
    """One order as published (or being published) by this process, shared by its retries.

    Up to PRODUCER_IDEMPOTENCY_KEYS of these stay in memory, so each keeps only what a retry needs:
    the id, the acceptance time, a fingerprint of the details, and the delivery.
    """

    __slots__ = ("accepted_at", "delivery", "fingerprint", "order_id")

    def __init__(self, order: Order, delivery: asyncio.Future[object]) -> None:
        self.order_id = order.order_id
        self.accepted_at = order.accepted_at
        self.fingerprint = hash(order.details)
        self.delivery = delivery

    def answer(self) -> orders_pb2.CreateOrderResponse:
        """The CreateOrder answer, the same for every retry of the same key."""
        return orders_pb2.CreateOrderResponse(
            order_id=self.order_id, state=_FIRST_STATE, accepted_at=timestamp(self.accepted_at)
        )


def not_acknowledged(order_id: str, error: BaseException) -> str:
    """The UNAVAILABLE message for an order Kafka did not acknowledge (logged as well)."""
    reason = "timed out" if isinstance(error, TimeoutError) else str(error)
    log.warning("order not acknowledged by Kafka", extra={"order_id": order_id, "reason": reason})
    return f"Kafka did not acknowledge the order ({reason}); retry with the same idempotency_key"


def correlation_id(metadata: Iterable[object] | None) -> str:
    """The caller's `x-correlation-id`, or a new one."""
    for item in metadata or ():
        key, value = getattr(item, "key", None), getattr(item, "value", None)
        if key == CORRELATION_HEADER and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return str(uuid.uuid4())


class OrderIntake:
    def __init__(self, publisher: KafkaPublisher, topic: str, remembered_keys: int) -> None:
        self._publisher = publisher
        self._topic = topic
        self._recent: TTLCache[str, Accepted] = TTLCache(remembered_keys, IDEMPOTENCY_TTL_S)

    def submit(self, request: orders_pb2.CreateOrderRequest, correlation: str) -> Accepted:
        """Validate and publish one order; raises OrderRejected. Does not wait for the ack."""
        try:
            details = details_from_proto(request.order)
            key = (
                validate_idempotency_key(request.idempotency_key)
                if request.idempotency_key
                else None
            )
        except InvalidOrder as exc:
            raise OrderRejected(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        order_id = new_order_id(details.customer_email, key)
        if key is not None:
            known = self._recent.get(order_id)
            # Reuse a publish that succeeded or is still in flight; a failed one is retried.
            if known is not None and not (known.delivery.done() and known.delivery.exception()):
                if known.fingerprint != hash(details):
                    raise OrderRejected(
                        grpc.StatusCode.ALREADY_EXISTS,
                        "idempotency_key was already used for a different order",
                    )
                return known
        accepted = self._publish(order_id, details, correlation)
        if key is not None:
            self._recent[order_id] = accepted
        return accepted

    def _publish(self, order_id: str, details: OrderDetails, correlation: str) -> Accepted:
        order = Order(order_id=order_id, details=details, accepted_at=utc_now())
        delivery = self._publisher.publish(
            self._topic,
            key=order_id,
            value=encode_order_accepted(order),
            headers=headers_for(ORDER_SCHEMA, correlation),
        )
        return Accepted(order, delivery)  # type: ignore[arg-type]
