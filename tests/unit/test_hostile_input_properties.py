"""Property tests: whatever a client sends, validation either names the bad field or yields an
order that renders safely (no header injection, HTML escaped)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

from hypothesis import given, settings
from hypothesis import strategies as st

from pedidos.domain.order import InvalidOrder, Order, OrderDetails
from pedidos.domain.states import ALL_STATES
from pedidos.notifications.render import EmailRenderer
from tests.unit.factories import details_kwargs

HOSTILE_FRAGMENTS = st.sampled_from(
    [
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "\r\nBcc: victim@example.com",
        "\nSubject: spoofed",
        "\x00",
        "\u202e",  # right-to-left override
        "🛒" * 50,
        "ñandú",
        "=?utf-8?b?SGk=?=",
        "--=_pedidos-boundary",
    ]
)
TEXT = st.one_of(st.text(max_size=300), HOSTILE_FRAGMENTS, st.lists(HOSTILE_FRAGMENTS).map("".join))
EXPECTED_HEADERS = {
    "content-type",
    "mime-version",
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "x-pedidos-order-id",
    "x-pedidos-state",
}
RENDERER = EmailRenderer("Tienda <ventas@tienda.cl>")


def validate(**overrides: object) -> OrderDetails | InvalidOrder:
    """Either outcome is fine for these properties; what matters is which one and its shape."""
    try:
        return OrderDetails.create(**details_kwargs(**overrides))
    except InvalidOrder as exc:
        return exc


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(["product_name", "bank", "shipping_region", "shipping_address"]),
    value=TEXT,
)
def test_text_fields_are_rejected_by_name_or_rendered_safely(field: str, value: str) -> None:
    details = validate(**{field: value})
    if isinstance(details, InvalidOrder):
        assert details.field == field
        return
    accepted = getattr(details, field)
    assert 0 < len(accepted) <= 200
    assert all(ch.isprintable() for ch in accepted)
    order = Order("9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41", details, datetime.now(UTC))
    for state in ALL_STATES:
        message = message_from_bytes(
            RENDERER.render(order, state, order.accepted_at).data, policy=policy.default
        )
        assert {name.lower() for name in message} == EXPECTED_HEADERS
        html = message.get_body(("html",)).get_content()
        assert "<script" not in html
        assert "<img" not in html


@settings(max_examples=300, deadline=None)
@given(email=st.one_of(st.emails(), TEXT, st.tuples(st.emails(), HOSTILE_FRAGMENTS).map("".join)))
def test_emails_are_rejected_or_single_safe_ascii_addresses(email: str) -> None:
    details = validate(customer_email=email)
    if isinstance(details, InvalidOrder):
        assert details.field == "customer_email"
        return
    address = details.customer_email
    assert address.isascii()
    assert address.count("@") == 1
    assert not any(ch in address for ch in "\r\n\t ,;<>")


@settings(max_examples=300, deadline=None)
@given(
    amount=st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans())
)
def test_prices_are_positive_bounded_integers(amount: object) -> None:
    details = validate(price_minor=amount)
    if isinstance(details, InvalidOrder):
        assert details.field == "price.amount_minor"
        return
    assert type(amount) is int
    assert 0 < details.price.amount_minor <= 100_000_000
