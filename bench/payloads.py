"""The orders every scenario sends: drawn from the catalogue, encoded and rendered like the
services do, so each figure and its limit handle the same bytes."""

from __future__ import annotations

import random

from pedidos.adapters.email.render import EmailRenderer
from pedidos.domain.catalogue import random_order
from pedidos.domain.order import Order, OrderDetails, new_order_id, utc_now
from pedidos.domain.states import ALL_STATES
from pedidos.ports import OutgoingEmail
from pedidos.v1 import orders_pb2
from pedidos.wire.proto_mapping import details_to_proto
from pedidos.wire.records import ORDER_SCHEMA, Headers, encode_order_accepted, headers_for

# Also the consumer's SMTP_FROM in the end-to-end runs, so both render identical e-mails.
SENDER = "Pedidos <pedidos@tienda.test>"


def random_details(rng: random.Random, index: int) -> OrderDetails:
    drawn = random_order(rng)
    return OrderDetails.create(
        product_name=drawn.product_name,
        price_minor=drawn.price_clp,
        currency="CLP",
        payment_gateway=drawn.payment_gateway.value,
        card_brand=drawn.card_brand.value if drawn.card_brand else None,
        bank=drawn.bank,
        shipping_region=drawn.shipping_region,
        shipping_address=drawn.shipping_address,
        customer_email=f"cliente{index}@example.cl",
    )


def request_details(seed: int, count: int) -> list[orders_pb2.OrderDetails]:
    rng = random.Random(seed)
    return [details_to_proto(random_details(rng, i)) for i in range(count)]


def accepted_orders(seed: int, count: int) -> list[Order]:
    rng = random.Random(seed)
    return [
        Order(
            order_id=new_order_id(details.customer_email, None),
            details=details,
            accepted_at=utc_now(),
        )
        for details in (random_details(rng, i) for i in range(count))
    ]


def order_records(seed: int, count: int) -> list[tuple[str, bytes, Headers]]:
    """(key, value, headers) exactly as the producer publishes an accepted order."""
    return [
        (order.order_id, encode_order_accepted(order), headers_for(ORDER_SCHEMA, order.order_id))
        for order in accepted_orders(seed, count)
    ]


def state_emails(seed: int, orders: int) -> list[OutgoingEmail]:
    """The five e-mails of each order, rendered by the consumer's renderer."""
    renderer = EmailRenderer(SENDER)
    messages = []
    for order in accepted_orders(seed, orders):
        for state in ALL_STATES:
            at = utc_now()
            order.enter(state, at)
            messages.append(renderer.render(order, state, at))
    return messages
