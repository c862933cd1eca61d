"""The Elasticsearch documents for an order: one per state reached, one for its current state.

Both carry the order's fields flat, under the names of `pedidos.wire.order_fields`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pedidos.domain.order import InvalidOrder, Order
from pedidos.domain.states import ALL_STATES, IllegalTransition, OrderState
from pedidos.ports import CorruptOrderDocument
from pedidos.wire.order_fields import FIELD_NAMES, flat_values, validated
from pedidos.wire.timestamps import iso_z


def iso(value: datetime) -> str:
    return iso_z(value, "milliseconds")


def _order_fields(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "accepted_at": iso(order.accepted_at),
        **flat_values(order.details),
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


def order_from_document(doc: dict[str, Any]) -> Order:
    """The inverse of `order_document`, through the domain's rules; raises CorruptOrderDocument."""
    try:
        order = Order(
            order_id=str(doc["order_id"]),
            details=validated([doc.get(name) for name in FIELD_NAMES]),
            accepted_at=datetime.fromisoformat(doc["accepted_at"]),
            trace_id=doc.get("trace_id"),
        )
        reached = doc.get("reached_at") or {}
        for state in ALL_STATES:
            at = reached.get(state.slug)
            if at is not None:  # a state after a gap is an illegal transition
                order.enter(state, datetime.fromisoformat(at))
    except (InvalidOrder, IllegalTransition, KeyError, TypeError, ValueError) as exc:
        raise CorruptOrderDocument(f"order document {doc.get('order_id')!r}: {exc}") from None
    return order
