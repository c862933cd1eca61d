"""The state feed's record reader and the current-state document read back as an Order."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from devkit.orders import make_details
from pedidos.adapters.kafka.state_feed import read_state
from pedidos.domain.order import Order
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.ports import CorruptOrderDocument
from pedidos.v1 import orders_pb2
from pedidos.wire.proto_mapping import details_to_proto, order_to_proto
from pedidos.wire.records import (
    StateReached,
    encode_order_accepted,
    encode_state_reached,
)
from pedidos.wire.search_documents import order_document, order_from_document

START = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def walked(state: OrderState) -> Order:
    order = Order(order_id=str(uuid.uuid4()), details=make_details(), accepted_at=START)
    for step in ALL_STATES[: state.position + 1]:
        order.enter(step, START + timedelta(seconds=step.position + 1))
    return order


def state_record(order: Order) -> bytes:
    assert order.state is not None
    return encode_state_reached(
        StateReached(order, order.state, START, email_status="sent", correlation_id="c")
    )


@pytest.mark.parametrize("state", list(OrderState))
def test_a_state_record_reads_as_its_walk(state: OrderState) -> None:
    order = walked(state)
    value = state_record(order)
    record = read_state(value)
    assert record is not None
    assert record.order.order_id == order.order_id
    assert record.state is state
    assert tuple(record.order.reached.items()) == tuple(order.reached.items())
    assert record.order.details == order.details


def _mutated(**changes: object) -> bytes:
    data = json.loads(state_record(walked(OrderState.ENVIADO)))
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"not json",
        b"[1, 2]",
        encode_order_accepted(walked(OrderState.PROCESANDO)),  # the other schema
        _mutated(version=2),
        _mutated(state="Perdido"),
        _mutated(state="Entregado"),  # does not match the walk
        _mutated(reached={"Enviado": START.isoformat()}),  # not a prefix of the walk
        _mutated(reached={"Procesando": "yesterday"}),
        _mutated(reached=[]),
        _mutated(order_id=7),
    ],
)
def test_anything_else_is_ignored(value: bytes | None) -> None:
    assert read_state(value) is None


@pytest.mark.parametrize("state", list(OrderState))
def test_the_current_state_document_reads_back_as_the_order(state: OrderState) -> None:
    order = walked(state)
    back = order_from_document(order_document(order))
    assert back.order_id == order.order_id
    assert back.details == order.details
    assert back.state is state
    # The document keeps milliseconds.
    assert back.accepted_at == START.replace(microsecond=123000)
    assert list(back.reached) == list(order.reached)


def test_a_broken_document_is_reported_not_guessed() -> None:
    doc = order_document(walked(OrderState.ENVIADO))
    del doc["reached_at"]["preparacion"]
    with pytest.raises(CorruptOrderDocument):
        order_from_document(doc)  # Enviado without Preparación: an illegal walk
    with pytest.raises(CorruptOrderDocument):
        order_from_document({**doc, "customer_email": "nope"})


def test_an_order_as_a_message() -> None:
    order = walked(OrderState.ENTREGADO)
    message = order_to_proto(order)
    assert message.order_id == order.order_id
    assert message.state == orders_pb2.ORDER_STATE_ENTREGADO
    assert message.accepted_at.ToDatetime(tzinfo=UTC) == START
    assert [r.state for r in message.reached] == [1, 2, 3, 4]
    assert [r.reached_at.seconds - message.accepted_at.seconds for r in message.reached] == [
        1,
        2,
        3,
        4,
    ]
    assert message.details == details_to_proto(order.details)
