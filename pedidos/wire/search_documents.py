"""The Elasticsearch documents for an order: one per state reached, one for its current state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pedidos.domain.order import Order
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.wire.timestamps import iso_z


def iso(value: datetime) -> str:
    return iso_z(value, "milliseconds")


def _order_fields(order: Order) -> dict[str, Any]:
    details = order.details
    return {
        "order_id": order.order_id,
        "accepted_at": iso(order.accepted_at),
        "product_name": details.product_name,
        "price_minor": details.price.amount_minor,
        "currency": details.price.currency,
        "payment_gateway": details.payment_gateway.value,
        "card_brand": details.card_brand.value if details.card_brand else None,
        "bank": details.bank,
        "shipping_region": details.shipping_region,
        "shipping_address": details.shipping_address,
        "customer_email": details.customer_email,
    }


def stage_duration_ms(order: Order, state: OrderState) -> int:
    """Time from the previous state (or acceptance) to `state`."""
    entered = order.reached[state]
    previous = order.accepted_at
    if state.position > 0:
        previous = order.reached.get(ALL_STATES[state.position - 1], order.accepted_at)
    return max(0, int((entered - previous).total_seconds() * 1000))


def event_document(
    order: Order,
    state: OrderState,
    *,
    email_status: str,
    email_message_id: str,
    email_error: str | None,
    correlation_id: str,
) -> dict[str, Any]:
    doc = {
        **_order_fields(order),
        "@timestamp": iso(order.reached[state]),
        "state": state.value,
        "state_index": state.position,
        "stage_duration_ms": stage_duration_ms(order, state),
        "email_status": email_status,
        "email_message_id": email_message_id,
        "correlation_id": correlation_id,
    }
    if email_error:
        doc["email_error"] = email_error
    return doc


def order_document(order: Order) -> dict[str, Any]:
    state = order.state
    assert state is not None, "an order document needs at least one state"
    return {
        **_order_fields(order),
        "@timestamp": iso(order.reached[state]),
        "state": state.value,
        "state_index": state.position,
        "reached_at": {s.slug: iso(at) for s, at in order.reached.items()},
    }
