"""Translation between the gRPC messages and the domain model."""

from __future__ import annotations

from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, cast

from google.protobuf.timestamp_pb2 import Timestamp

from pedidos.domain.order import Order, OrderDetails
from pedidos.domain.states import OrderState
from pedidos.v1 import orders_pb2
from pedidos.wire.order_fields import DETAIL_FIELDS, JsonShape, Value, validated


class _ProtoEnum:
    """An enum field of the proto: its names carry the type's prefix (PAYMENT_GATEWAY_STRIPE for
    the domain's STRIPE) and 0 is UNSPECIFIED (the domain's None)."""

    def __init__(self, descriptor: Any) -> None:  # an EnumDescriptor (upb or pure Python)
        self.prefix = descriptor.values_by_number[0].name.removesuffix("UNSPECIFIED")
        self.names = {
            value.number: value.name.removeprefix(self.prefix)
            for value in descriptor.values
            if value.number != 0
        }

    def name(self, number: int) -> str | None:
        # An unknown number (a newer client) fails validation as an unknown value would.
        return None if number == 0 else self.names.get(number, "?")

    def label(self, name: Value) -> str | int:
        return 0 if name is None else self.prefix + str(name)


def _proto_enums() -> dict[int, tuple[str, _ProtoEnum]]:
    """The enum fields of DETAIL_FIELDS (all directly in OrderDetails) by position in the table."""
    enums = {}
    for position, field in enumerate(DETAIL_FIELDS):
        found = orders_pb2.OrderDetails.DESCRIPTOR.fields_by_name[field.proto[0]]
        if found.enum_type is not None:
            enums[position] = (field.proto[0], _ProtoEnum(found.enum_type))
    return enums


_ENUMS = _proto_enums()
_read_proto: Any = attrgetter(*(".".join(field.proto) for field in DETAIL_FIELDS))
_PROTO_SHAPE = JsonShape([field.proto for field in DETAIL_FIELDS], root="order")


def details_from_proto(message: orders_pb2.OrderDetails) -> OrderDetails:
    """Validate a request's order; raises InvalidOrder naming the field.

    The same order content (a retry, a customer's repeat order, a bulk import) is validated once:
    `validated` remembers details by their field values, read straight from the message (keying
    by its serialized bytes cost a serialize and a parse per order, for a miss on every new one).
    """
    values = list(_read_proto(message))
    for position, (_, enum) in _ENUMS.items():
        values[position] = enum.name(values[position])
    return validated(values)


def details_to_proto(details: OrderDetails) -> orders_pb2.OrderDetails:
    fields = _PROTO_SHAPE.dump(details)
    for name, enum in _ENUMS.values():
        fields[name] = enum.label(fields[name])
    return orders_pb2.OrderDetails(**fields)


def state_to_proto(state: OrderState) -> orders_pb2.OrderState:
    return cast(orders_pb2.OrderState, orders_pb2.OrderState.Value(f"ORDER_STATE_{state.name}"))


def state_from_proto(value: int) -> OrderState | None:
    name = orders_pb2.OrderState.Name(value).removeprefix("ORDER_STATE_")
    return OrderState[name] if name in OrderState.__members__ else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp(value: datetime) -> Timestamp:
    """What `Timestamp.FromDatetime` gives (a naive value read as UTC), in a seventh of the time:
    every answer carries one (a 1,000-order batch, a thousand)."""
    stamp = Timestamp()
    fill_timestamp(stamp, value)
    return stamp


def fill_timestamp(stamp: Timestamp, value: datetime) -> None:
    """`timestamp(value)` written into a field of a message being built."""
    since = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    stamp.seconds = since.days * 86_400 + since.seconds
    stamp.nanos = since.microseconds * 1_000


def datetime_from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def state_change_to_proto(
    order_id: str, state: OrderState, at: datetime
) -> orders_pb2.OrderStateChange:
    return orders_pb2.OrderStateChange(
        order_id=order_id, state=state_to_proto(state), reached_at=timestamp(at)
    )


def order_to_proto(order: Order) -> orders_pb2.Order:
    current = order.state
    return orders_pb2.Order(
        order_id=order.order_id,
        state=state_to_proto(current) if current else orders_pb2.ORDER_STATE_UNSPECIFIED,
        accepted_at=timestamp(order.accepted_at),
        reached=[
            orders_pb2.ReachedState(state=state_to_proto(state), reached_at=timestamp(at))
            for state, at in sorted(order.reached.items(), key=lambda item: item[0].position)
        ],
        details=details_to_proto(order.details),
        trace_id=order.trace_id or "",
    )
