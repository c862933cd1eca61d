import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from devkit.orders import make_details
from pedidos.domain.order import InvalidOrder, Order
from pedidos.domain.states import OrderState
from pedidos.wire import order_fields
from pedidos.wire.records import (
    MAX_RECORD_BYTES,
    ORDER_SCHEMA,
    OrderAccepted,
    PoisonRecord,
    StateReached,
    decode,
    encode_order_accepted,
    encode_state_reached,
    header_value,
    headers_for,
    state_headers,
    state_in_headers,
)

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
        (b"[" * 5000 + b"]" * 5000, "not JSON"),
        (b'{"schema": "pedidos.order", "version": Infinity}', "unsupported"),
    ],
)
@pytest.mark.parametrize("cached", [False, True], ids=["cold", "details-cached"])
def test_poison_records_are_rejected_with_a_reason(
    raw: bytes | None, problem: str, cached: bool
) -> None:
    order_fields._validated.cache_clear()
    if cached:  # the order's valid details were seen before
        decode(encode_order_accepted(order()))
    with pytest.raises(PoisonRecord, match=problem):
        decode(raw)


def _with_details(**changes: object) -> bytes:
    data = json.loads(encode_order_accepted(order()))
    data["order"].update(changes)
    return json.dumps(data).encode()


def test_details_validated_once_are_reused_for_the_same_order() -> None:
    order_fields._validated.cache_clear()
    first = decode(encode_order_accepted(order()))
    walked = order()
    walked.enter(OrderState.PROCESANDO, T0)
    event = StateReached(walked, OrderState.PROCESANDO, T0, "sent", "c")
    second = decode(encode_state_reached(event))
    assert second.order.details is first.order.details
    assert order_fields._validated.cache_info().hits >= 1
    other = _with_details(shipping_address="Otra Calle 1")
    assert decode(other).order.details.shipping_address == "Otra Calle 1"


CLP = "CLP"


@pytest.mark.parametrize(
    ("valid", "invalid"),
    [
        # Equal in Python to the cached values (129990.0 == 129990, True == 1), yet invalid.
        ({}, {"price": {"amount_minor": 129_990.0, "currency": CLP}}),
        (
            {"price": {"amount_minor": 1, "currency": CLP}},
            {"price": {"amount_minor": True, "currency": CLP}},
        ),
        ({}, {"customer_email": "not-an-email"}),
        ({}, {"bank": "Banco\x00"}),
        ({}, {"card_brand": float("nan")}),
    ],
)
def test_details_differing_from_the_cached_ones_are_validated_again(
    valid: dict[str, object], invalid: dict[str, object]
) -> None:
    decode(_with_details(**valid))
    with pytest.raises(PoisonRecord, match="invalid order"):
        decode(_with_details(**invalid))


def test_details_cache_is_bounded() -> None:
    order_fields._validated.cache_clear()
    for n in range(5):
        decode(_with_details(shipping_address=f"Calle {n}"))
    info = order_fields._validated.cache_info()
    assert info.currsize == 5
    assert info.maxsize == 10_000


PRINTABLE = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]))


@settings(max_examples=200, deadline=None)
@given(product_name=PRINTABLE, shipping_address=PRINTABLE, bank=PRINTABLE)
def test_records_are_the_bytes_json_dumps_wrote(
    product_name: str, shipping_address: str, bank: str
) -> None:
    """The wire format is unchanged by the faster encoder: compact UTF-8, non-ASCII unescaped."""
    try:
        details = make_details(
            product_name=product_name, shipping_address=shipping_address, bank=bank
        )
    except InvalidOrder:
        assume(False)
    walked = Order(ORDER_ID, details, T0)
    walked.enter(OrderState.PROCESANDO, T0)
    for value in (
        encode_order_accepted(walked),
        encode_state_reached(StateReached(walked, OrderState.PROCESANDO, T0, "sent", "c")),
    ):
        data = json.loads(value)
        assert value == json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        assert decode(value).order.details == details


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


def test_timestamps_keep_their_offset_even_for_an_equal_utc_instant() -> None:
    """Record timestamps are cached for UTC values only; other offsets are written as given."""
    assert json.loads(encode_order_accepted(order()))["accepted_at"] == (
        "2026-11-23T12:00:00.000000Z"
    )
    walked = Order(ORDER_ID, order().details, T0.astimezone(timezone(timedelta(hours=-3))))
    assert walked.accepted_at == T0
    assert json.loads(encode_order_accepted(walked))["accepted_at"] == (
        "2026-11-23T09:00:00.000000-03:00"
    )


def _state_record_with(reached: dict[str, str], state: str) -> bytes:
    walked = order()
    walked.enter(OrderState.PROCESANDO, T0)
    data = json.loads(
        encode_state_reached(StateReached(walked, OrderState.PROCESANDO, T0, "sent", "c"))
    )
    return json.dumps({**data, "reached": reached, "state": state}).encode()


def test_states_reached_in_any_key_order_decode_the_same() -> None:
    """The fast path takes the walk's prefix as written; any other key order is entered one by
    one and gives the same order."""
    times = {s.value: f"2026-11-23T12:00:0{i}Z" for i, s in enumerate(OrderState)}
    names = [s.value for s in OrderState][:3]
    in_order = decode(_state_record_with({n: times[n] for n in names}, "Enviado"))
    reversed_ = decode(_state_record_with({n: times[n] for n in reversed(names)}, "Enviado"))
    assert isinstance(in_order, StateReached)
    assert isinstance(reversed_, StateReached)
    assert in_order.order.reached == reversed_.order.reached
    assert list(in_order.order.reached) == [OrderState(n) for n in names]


@pytest.mark.parametrize(
    ("reached", "state", "problem"),
    [
        (["Procesando", "Enviado"], "Enviado", "illegal transition"),  # a state skipped
        (["Preparación"], "Preparación", "starts at"),
        ([], "Procesando", "does not match"),
        (["Procesando", "Preparación"], "Procesando", "does not match"),
        (["Procesando", "Perdido"], "Preparación", "unknown order state"),
    ],
)
def test_states_reached_must_be_the_walk_so_far(
    reached: list[str], state: str, problem: str
) -> None:
    record = _state_record_with({n: "2026-11-23T12:00:00Z" for n in reached}, state)
    with pytest.raises(PoisonRecord, match=problem):
        decode(record)


def test_a_bad_timestamp_among_the_states_reached_is_named() -> None:
    record = _state_record_with(
        {"Procesando": "2026-11-23T12:00:00Z", "Preparación": "x"}, "Preparación"
    )
    with pytest.raises(PoisonRecord, match=r"reached\.Preparación"):
        decode(record)


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"  # pragma: allowlist secret (a W3C example trace id)


@pytest.mark.parametrize(
    ("traceparent", "trace_id"),
    [
        (f"00-{TRACE}-00f067aa0ba902b7-01", TRACE),
        (f"00-{TRACE}-00f067aa0ba902b7-00", None),  # not sampled: no backend holds it
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
        ("00-xyz-00f067aa0ba902b7-01", None),
        (None, None),
    ],
)
def test_a_record_s_order_carries_its_sampled_trace_id(
    traceparent: str | None, trace_id: str | None
) -> None:
    order = Order(ORDER_ID, make_details(), T0)
    headers = headers_for("pedidos.order", "c")
    if traceparent is not None:
        headers.append(("traceparent", traceparent.encode()))
    decoded = decode(encode_order_accepted(order), headers)
    assert decoded.order.trace_id == trace_id


def test_a_state_record_names_its_state_in_a_header_read_without_its_body() -> None:
    headers = state_headers(OrderState.PREPARACION, "corr-1")
    assert state_in_headers(headers) is OrderState.PREPARACION
    assert header_value(headers, "correlation-id") == "corr-1"
    # An order record, an older state record without it, or a value no state has: unknown.
    assert state_in_headers(headers_for(ORDER_SCHEMA, "corr-1")) is None
    assert state_in_headers([("pedidos-state", b"Perdido")]) is None
    assert state_in_headers([("pedidos-state", None)]) is None  # type: ignore[list-item]
    assert state_in_headers(None) is None
