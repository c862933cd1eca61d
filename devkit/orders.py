"""Orders for tests, the bench and the demo: one valid order whose fields a test overrides to
break one rule, and seeded random ones drawn from the catalogue, as domain objects, gRPC requests
or the records the producer publishes."""

from __future__ import annotations

import random
import uuid
from typing import Any

from client.orders import to_order_details
from pedidos.domain.catalogue import random_order
from pedidos.domain.order import Order, OrderDetails, new_order_id, utc_now
from pedidos.v1 import orders_pb2
from pedidos.wire.proto_mapping import details_to_proto
from pedidos.wire.records import ORDER_SCHEMA, Headers, encode_order_accepted, headers_for


def details_kwargs(**overrides: Any) -> dict[str, Any]:
    """OrderDetails.create's arguments for a valid order, with `overrides` applied."""
    values: dict[str, Any] = {
        "product_name": "Silla Gamer",
        "price_minor": 129_990,
        "currency": "CLP",
        "payment_gateway": "MERCADO_PAGO",
        "card_brand": "VISA",
        "bank": "Banco de Chile",
        "shipping_region": "Región Metropolitana",
        "shipping_address": "Calle Pajaritos 300, Maipú",
        "customer_email": "cliente@example.cl",
    }
    values.update(overrides)
    return values


def make_details(**overrides: Any) -> OrderDetails:
    return OrderDetails.create(**details_kwargs(**overrides))


def order_request(key: str | None = None, **overrides: Any) -> orders_pb2.CreateOrderRequest:
    """A valid CreateOrderRequest with a fresh idempotency key (or `key`); `overrides` replace
    fields of its OrderDetails message."""
    fields: dict[str, Any] = {
        "product_name": "Laptop HP",
        "price": orders_pb2.Money(currency_code="CLP", amount_minor=649_990),
        "payment_gateway": orders_pb2.PAYMENT_GATEWAY_MERCADO_PAGO,
        "card_brand": orders_pb2.CARD_BRAND_MASTERCARD,
        "bank": "Banco Estado",
        "shipping_region": "Región del Biobío",
        "shipping_address": "Calle Balmaceda 200, Concepción",
        "customer_email": "comprador@example.cl",
    }
    fields.update(overrides)
    return orders_pb2.CreateOrderRequest(
        order=orders_pb2.OrderDetails(**fields),
        idempotency_key=str(uuid.uuid4()) if key is None else key,
    )


def random_details(rng: random.Random, index: int) -> OrderDetails:
    """A catalogue order for customer number `index` (each customer its own address)."""
    return to_order_details(random_order(rng), f"cliente{index}@example.cl")


def request_details(seed: int, count: int) -> list[orders_pb2.OrderDetails]:
    rng = random.Random(seed)
    return [details_to_proto(random_details(rng, i)) for i in range(count)]


def accepted_orders(seed: int, count: int) -> list[Order]:
    rng = random.Random(seed)
    return [
        Order(
            order_id=new_order_id(details.customer_email, None, b""),
            details=details,
            accepted_at=utc_now(),
        )
        for details in (random_details(rng, i) for i in range(count))
    ]


def order_record(order: Order) -> tuple[str, bytes, Headers]:
    """(key, value, headers) exactly as the producer publishes an accepted order."""
    return order.order_id, encode_order_accepted(order), headers_for(ORDER_SCHEMA, order.order_id)


def order_records(seed: int, count: int) -> list[tuple[str, bytes, Headers]]:
    return [order_record(order) for order in accepted_orders(seed, count)]
