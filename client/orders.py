"""CreateOrderRequest messages built from the catalogue's random orders, via the domain rules."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator

from pedidos.domain.catalogue import RandomOrder, random_order
from pedidos.domain.order import InvalidOrder, OrderDetails
from pedidos.v1 import orders_pb2
from pedidos.wire.proto_mapping import details_to_proto

# Where orders go when nobody says otherwise; example.com is reserved, so no real inbox gets mail.
DEFAULT_CUSTOMER_EMAIL = "cliente@example.com"
# Any fixed catalogue order will do: it only carries the e-mail through the domain's checks.
_EMAIL_PROBE_ORDER = random_order(random.Random(0))


class InvalidEmail(ValueError):
    """The address breaks the same rules the producer applies; the message is for the user."""

    def __init__(self, address: str) -> None:
        super().__init__(f"El correo electrónico «{address}» no es válido.")
        self.address = address


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def to_order_details(order: RandomOrder, customer_email: str) -> OrderDetails:
    """Validate a catalogue order for `customer_email`; raises InvalidOrder like the producer."""
    return order.details(customer_email)


def check_email(address: str) -> str:
    """The normalised address, or InvalidEmail; checked locally so a typo costs no RPC."""
    try:
        details = to_order_details(_EMAIL_PROBE_ORDER, address.strip())
    except InvalidOrder as exc:
        if exc.field != "customer_email":
            raise
        raise InvalidEmail(address) from None
    return details.customer_email


def to_request(details: OrderDetails, idempotency_key: str) -> orders_pb2.CreateOrderRequest:
    return orders_pb2.CreateOrderRequest(
        order=details_to_proto(details), idempotency_key=idempotency_key
    )


def random_requests(
    count: int,
    customer_email: str,
    rng: random.Random,
    new_key: Callable[[], str] = new_idempotency_key,
) -> Iterator[orders_pb2.CreateOrderRequest]:
    """`count` random orders, lazily, each with its own idempotency key.

    The seed fixes the orders' content only: keys stay random so that re-running a seeded batch
    creates new orders instead of being answered with the previous run's ids.
    """
    for _ in range(count):
        yield to_request(to_order_details(random_order(rng), customer_email), new_key())
