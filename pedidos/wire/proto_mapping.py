"""Translation between the gRPC messages and the domain model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from google.protobuf.timestamp_pb2 import Timestamp

from pedidos.domain.order import Order, OrderDetails
from pedidos.domain.states import OrderState
from pedidos.v1 import orders_pb2

_GATEWAY_PREFIX = "PAYMENT_GATEWAY_"
_BRAND_PREFIX = "CARD_BRAND_"
# Validated details by their wire bytes: the same order content (a retry, a customer's repeat
# order, a bulk import) is validated once. OrderDetails is immutable, so sharing it is safe.
_VALIDATED_MAX = 4096
_validated: dict[bytes, OrderDetails] = {}


def _enum_name(descriptor: object, number: int, prefix: str) -> str | None:
    values = descriptor.values_by_number  # type: ignore[attr-defined]
    if number not in values:
        return "?"
    name = str(values[number].name)
    if name.endswith("_UNSPECIFIED"):
        return None
    return name.removeprefix(prefix)


def details_from_proto(message: orders_pb2.OrderDetails) -> OrderDetails:
    """Validate a request's order; raises InvalidOrder naming the field."""
    wire = message.SerializeToString(deterministic=True)
    known = _validated.get(wire)
    if known is not None:
        return known
    details = _validate_details(message)
    if len(_validated) >= _VALIDATED_MAX:
        del _validated[next(iter(_validated))]
    _validated[wire] = details
    return details


def _validate_details(message: orders_pb2.OrderDetails) -> OrderDetails:
    gateway = _enum_name(
        orders_pb2.PaymentGateway.DESCRIPTOR, message.payment_gateway, _GATEWAY_PREFIX
    )
    brand = _enum_name(orders_pb2.CardBrand.DESCRIPTOR, message.card_brand, _BRAND_PREFIX)
    return OrderDetails.create(
        product_name=message.product_name,
        price_minor=message.price.amount_minor,
        currency=message.price.currency_code,
        payment_gateway=gateway,
        card_brand=brand,
        bank=message.bank,
        shipping_region=message.shipping_region,
        shipping_address=message.shipping_address,
        customer_email=message.customer_email,
    )


def details_to_proto(details: OrderDetails) -> orders_pb2.OrderDetails:
    return orders_pb2.OrderDetails(
        product_name=details.product_name,
        price=orders_pb2.Money(
            currency_code=details.price.currency, amount_minor=details.price.amount_minor
        ),
        # Value() is typed as returning int; the number is this enum's.
        payment_gateway=cast(
            orders_pb2.PaymentGateway,
            orders_pb2.PaymentGateway.Value(_GATEWAY_PREFIX + details.payment_gateway.value),
        ),
        card_brand=(
            cast(
                orders_pb2.CardBrand,
                orders_pb2.CardBrand.Value(_BRAND_PREFIX + details.card_brand.value),
            )
            if details.card_brand
            else orders_pb2.CARD_BRAND_UNSPECIFIED
        ),
        bank=details.bank,
        shipping_region=details.shipping_region,
        shipping_address=details.shipping_address,
        customer_email=details.customer_email,
    )


def state_to_proto(state: OrderState) -> orders_pb2.OrderState:
    return cast(orders_pb2.OrderState, orders_pb2.OrderState.Value(f"ORDER_STATE_{state.name}"))


def state_from_proto(value: int) -> OrderState | None:
    name = orders_pb2.OrderState.Name(value).removeprefix("ORDER_STATE_")
    return OrderState[name] if name in OrderState.__members__ else None


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


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
    )
