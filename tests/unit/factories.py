"""Valid domain objects for unit tests; override one field to test a rule."""

from __future__ import annotations

from typing import Any

from pedidos.domain.order import OrderDetails


def details_kwargs(**overrides: Any) -> dict[str, Any]:
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
