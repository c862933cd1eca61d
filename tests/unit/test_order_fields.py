"""The one table of the order's fields: complete, and what every wire format carries."""

from __future__ import annotations

import dataclasses
import inspect
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from devkit.orders import make_details
from pedidos.domain.order import InvalidOrder, Order, OrderDetails
from pedidos.domain.states import OrderState
from pedidos.ports import CorruptOrderDocument
from pedidos.v1 import orders_pb2
from pedidos.wire import order_fields
from pedidos.wire.order_fields import DETAIL_FIELDS, FIELD_NAMES, flat_values, validated
from pedidos.wire.proto_mapping import details_from_proto, details_to_proto, timestamp
from pedidos.wire.records import decode, encode_order_accepted
from pedidos.wire.search_documents import order_document, order_from_document

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ORDER_ID = "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"
CARD = make_details()
TRANSFER = make_details(payment_gateway="BANK_TRANSFER", card_brand=None, currency="USD")


def _leaves(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    for key, value in data.items():
        if isinstance(value, dict):
            paths |= _leaves(value, (*prefix, key))
        else:
            paths.add((*prefix, key))
    return paths


def _proto_leaves(descriptor: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    for field in descriptor.fields:
        if field.message_type is not None:
            paths |= _proto_leaves(field.message_type, (*prefix, field.name))
        else:
            paths.add((*prefix, field.name))
    return paths


def test_the_table_has_one_row_per_parameter_of_the_domain_constructor_in_its_order() -> None:
    # In order: `from_values` hands the table's values to `OrderDetails.create` by position.
    parameters = tuple(inspect.signature(OrderDetails.create).parameters)
    assert parameters == FIELD_NAMES
    assert len(set(FIELD_NAMES)) == len(FIELD_NAMES)
    read = {field.attribute.split(".")[0] for field in DETAIL_FIELDS}
    assert read == {field.name for field in dataclasses.fields(OrderDetails)}


def test_values_in_table_order_reach_the_constructor_by_position() -> None:
    """`from_values` hands the table's values to `OrderDetails.create` by position (a keyword
    call cost ~1 µs more per order); a short sequence is refused, not shifted."""
    values = list(order_fields.values_of(TRANSFER))
    assert order_fields.from_values(values) == TRANSFER
    with pytest.raises(ValueError, match="9 values expected, got 8"):
        order_fields.from_values(values[:-1])


def test_every_wire_format_carries_exactly_the_table() -> None:
    order = Order(ORDER_ID, CARD, T0)
    record = json.loads(encode_order_accepted(order))["order"]
    assert _leaves(record) == {field.record for field in DETAIL_FIELDS}
    assert list(record) == list(dict.fromkeys(field.record[0] for field in DETAIL_FIELDS))
    order.enter(OrderState.PROCESANDO, T0)
    document = order_document(order)
    assert set(FIELD_NAMES) <= set(document)
    assert _proto_leaves(orders_pb2.OrderDetails.DESCRIPTOR) == {f.proto for f in DETAIL_FIELDS}


@pytest.mark.parametrize("details", [CARD, TRANSFER], ids=["card", "bank-transfer"])
def test_each_format_gives_back_the_same_details(details: OrderDetails) -> None:
    order = Order(ORDER_ID, details, T0)
    assert decode(encode_order_accepted(order)).order.details == details
    order.enter(OrderState.PROCESANDO, T0)
    stored = json.loads(json.dumps(order_document(order)))
    assert order_from_document(stored).details == details
    assert details_from_proto(details_to_proto(details)) == details
    assert OrderDetails.create(**flat_values(details)) == details
    sent = details_to_proto(details)
    assert (sent.price.currency_code, sent.price.amount_minor) == (
        details.price.currency,
        details.price.amount_minor,
    )
    assert orders_pb2.PaymentGateway.Name(sent.payment_gateway) == (
        f"PAYMENT_GATEWAY_{details.payment_gateway.value}"
    )


def test_proto_enums_unspecified_is_none_and_an_unknown_number_is_refused() -> None:
    sent = details_to_proto(TRANSFER)
    assert sent.card_brand == orders_pb2.CARD_BRAND_UNSPECIFIED
    unknown = orders_pb2.OrderDetails()
    unknown.CopyFrom(details_to_proto(CARD))
    unknown.payment_gateway = 99  # type: ignore[assignment]  # a newer client's value
    with pytest.raises(InvalidOrder) as refused:
        details_from_proto(unknown)
    assert refused.value.field == "payment_gateway"
    unknown.CopyFrom(details_to_proto(TRANSFER))
    unknown.card_brand = 99  # type: ignore[assignment]  # not "no brand", which transfers allow
    with pytest.raises(InvalidOrder, match="known card brand"):
        details_from_proto(unknown)


def test_values_equal_in_python_but_not_to_validation_miss_the_cache() -> None:
    one = make_details(price_minor=1)
    values: list[object] = [flat_values(one)[name] for name in FIELD_NAMES]
    assert validated(values) == one  # now cached
    price = FIELD_NAMES.index("price_minor")
    for lookalike in (1.0, True):  # == 1, yet not an integer amount
        with pytest.raises(InvalidOrder, match="integer"):
            validated([*values[:price], lookalike, *values[price + 1 :]])
    stored = {**json.loads(json.dumps(flat_values(one))), "price_minor": 1.0}
    with pytest.raises(CorruptOrderDocument, match="integer"):
        order_from_document({**stored, "order_id": ORDER_ID, "accepted_at": "2026-11-23T12:00Z"})
    assert order_fields._validated.cache_info().maxsize is not None


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 12, 1, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
        datetime(2026, 3, 1, 8, 30, tzinfo=timezone(timedelta(hours=-3))),
        datetime(2026, 3, 1, 8, 30, 0, 500),  # naive: read as UTC
    ],
)
def test_timestamp_is_what_protobuf_from_datetime_gives(value: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value)
    assert timestamp(value) == expected
