"""Valid CreateOrder requests for tests; override a field to make one invalid."""

from __future__ import annotations

import uuid
from typing import Any

from pedidos.v1 import orders_pb2


def order_request(key: str | None = None, **overrides: Any) -> orders_pb2.CreateOrderRequest:
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
