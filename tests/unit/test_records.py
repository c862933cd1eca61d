import json
from datetime import UTC, datetime, timedelta

import pytest

from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.records import (
    MAX_RECORD_BYTES,
    OrderAccepted,
    PoisonRecord,
    StateReached,
    decode,
    encode_order_accepted,
    encode_state_reached,
    header_value,
    headers_for,
)
from tests.unit.factories import make_details

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ORDER_ID = "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"


def order() -> Order:
    return Order(ORDER_ID, make_details(payment_gateway="BANK_TRANSFER", card_brand=None), T0)


def test_order_record_round_trips() -> None:
    headers = headers_for("pedidos.order", "corr-1")
    decoded = decode(encode_order_accepted(order()), headers)
    assert isinstance(decoded, OrderAccepted)
    assert decoded.order.details == order().details
    assert decoded.order.accepted_at == T0
    assert decoded.correlation_id == "corr-1"
    assert header_value(headers, "pedidos-schema") == "pedidos.order.v1"
    assert header_value(headers, "content-type") == "application/json"


def test_state_record_round_trips_with_the_states_reached() -> None:
    walked = order()
    walked.enter(OrderState.PROCESANDO, T0 + timedelta(seconds=1))
    walked.enter(OrderState.PREPARACION, T0 + timedelta(seconds=2))
    event = StateReached(walked, OrderState.PREPARACION, T0 + timedelta(seconds=3), "sent", "c")
    decoded = decode(encode_state_reached(event))
    assert isinstance(decoded, StateReached)
    assert decoded.state is OrderState.PREPARACION
    assert decoded.order.reached == walked.reached
    assert decoded.stage_ends_at == T0 + timedelta(seconds=3)
    assert decoded.correlation_id == ORDER_ID  # no header: falls back to the order id


def test_money_is_an_integer_in_the_record() -> None:
    data = json.loads(encode_order_accepted(order()))
    assert data["order"]["price"] == {"amount_minor": 129_990, "currency": "CLP"}
    assert data["schema"] == "pedidos.order"
    assert data["version"] == 1


def _mutated(**changes: object) -> bytes:
    data = json.loads(encode_order_accepted(order()))
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (None, "tombstone"),
        (b"\xff\xfe garbage", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b"x" * (MAX_RECORD_BYTES + 1), "exceeds"),
        (_mutated(schema="pedidos.refund"), "unknown schema"),
        (_mutated(version=2), "unsupported"),
        (_mutated(order_id="1; DROP TABLE"), "UUID"),
        (_mutated(accepted_at="yesterday"), "ISO-8601"),
        (_mutated(accepted_at="2026-11-23T12:00:00"), "UTC offset"),
        (_mutated(order={"price": {"amount_minor": float("nan")}}), "invalid order"),
        (_mutated(order="nope"), "must be an object"),
    ],
)
def test_poison_records_are_rejected_with_a_reason(raw: bytes | None, problem: str) -> None:
    with pytest.raises(PoisonRecord, match=problem):
        decode(raw)


def test_state_record_with_unknown_or_inconsistent_state_is_poison() -> None:
    walked = order()
    walked.enter(OrderState.PROCESANDO, T0)
    data = json.loads(
        encode_state_reached(StateReached(walked, OrderState.PROCESANDO, T0, "sent", "c"))
    )
    with pytest.raises(PoisonRecord, match="unknown order state"):
        decode(json.dumps({**data, "state": "Perdido"}).encode())
    with pytest.raises(PoisonRecord, match="does not match"):
        decode(json.dumps({**data, "state": "Enviado"}).encode())
    with pytest.raises(PoisonRecord, match=r"illegal transition|starts at"):
        decode(json.dumps({**data, "reached": {"Enviado": "2026-11-23T12:00:00Z"}}).encode())
