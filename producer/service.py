"""OrderService.CreateOrder: validate, publish to `Pedidos`, answer after Kafka's ack."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid

import grpc
from cachetools import TTLCache

from pedidos.adapters.kafka_publisher import KafkaPublisher, PublishError
from pedidos.domain.order import (
    InvalidOrder,
    Order,
    OrderDetails,
    new_order_id,
    utc_now,
    validate_idempotency_key,
)
from pedidos.domain.states import FIRST_STATE
from pedidos.logs import mask_email
from pedidos.proto_mapping import details_from_proto, state_to_proto, timestamp
from pedidos.records import ORDER_SCHEMA, encode_order_accepted, headers_for
from pedidos.v1 import orders_pb2, orders_pb2_grpc

log = logging.getLogger(__name__)

# How long a key is remembered by one producer process; see the README's idempotency notes.
IDEMPOTENCY_TTL_S = 24 * 3600
IDEMPOTENCY_MAX_KEYS = 100_000


class _Accepted:
    """One order as published (or being published) by this process, shared by its retries."""

    def __init__(self, order: Order, fingerprint: str, delivery: asyncio.Future[object]) -> None:
        self.order = order
        self.fingerprint = fingerprint
        self.delivery = delivery


def _fingerprint(details: OrderDetails) -> str:
    return hashlib.sha256(repr(details).encode()).hexdigest()


class OrderService(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, publisher: KafkaPublisher, topic: str, publish_timeout_s: float) -> None:
        self._publisher = publisher
        self._topic = topic
        self._publish_timeout_s = publish_timeout_s
        self._recent: TTLCache[str, _Accepted] = TTLCache(IDEMPOTENCY_MAX_KEYS, IDEMPOTENCY_TTL_S)

    async def CreateOrder(
        self, request: orders_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.CreateOrderResponse:
        try:
            details = details_from_proto(request.order)
            key = (
                validate_idempotency_key(request.idempotency_key)
                if request.idempotency_key
                else None
            )
        except InvalidOrder as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        correlation_id = _correlation_id(context)
        accepted = self._accept(details, key, correlation_id)
        if accepted.fingerprint != _fingerprint(details):
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                "idempotency_key was already used for a different order",
            )
        remaining = context.time_remaining()
        timeout = (
            self._publish_timeout_s
            if remaining is None
            else min(remaining, self._publish_timeout_s)
        )
        try:
            await asyncio.wait_for(
                asyncio.shield(accepted.delivery), timeout=max(timeout - 0.05, 0.01)
            )
        except (TimeoutError, PublishError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            log.warning(
                "order not acknowledged by Kafka",
                extra={"order_id": accepted.order.order_id, "reason": reason},
            )
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"Kafka did not acknowledge the order ({reason}); "
                "retry with the same idempotency_key",
            )
        log.info(
            "order accepted",
            extra={
                "order_id": accepted.order.order_id,
                "customer": mask_email(details.customer_email),
                "correlation_id": correlation_id,
            },
        )
        return orders_pb2.CreateOrderResponse(
            order_id=accepted.order.order_id,
            state=state_to_proto(FIRST_STATE),
            accepted_at=timestamp(accepted.order.accepted_at),
        )

    def _accept(self, details: OrderDetails, key: str | None, correlation_id: str) -> _Accepted:
        order_id = new_order_id(details.customer_email, key)
        if key is not None:
            known = self._recent.get(order_id)
            # Reuse a publish that succeeded or is still in flight; a failed one is retried.
            if known is not None and not (known.delivery.done() and known.delivery.exception()):
                return known
        order = Order(order_id=order_id, details=details, accepted_at=utc_now())
        delivery = self._publisher.publish(
            self._topic,
            key=order_id,
            value=encode_order_accepted(order),
            headers=headers_for(ORDER_SCHEMA, correlation_id),
        )
        # Nobody may be awaiting it when it fails; keep asyncio from warning about that.
        delivery.add_done_callback(lambda f: f.exception())
        accepted = _Accepted(order, _fingerprint(details), delivery)  # type: ignore[arg-type]
        if key is not None:
            self._recent[order_id] = accepted
        return accepted


def _correlation_id(context: grpc.aio.ServicerContext) -> str:
    for item in context.invocation_metadata() or ():
        if (
            item.key == "x-correlation-id"
            and isinstance(item.value, str)
            and 0 < len(item.value) <= 128
        ):
            return item.value
    return str(uuid.uuid4())
