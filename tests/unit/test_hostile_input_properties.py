"""Property tests: whatever a client sends, validation either names the bad field or yields an
order that renders safely (no header injection, HTML escaped)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser

from hypothesis import example, given, settings
from hypothesis import strategies as st

from devkit.inbox import part_text
from devkit.orders import details_kwargs, make_details
from pedidos.adapters.email.render import EmailRenderer
from pedidos.domain.order import InvalidOrder, Order, OrderDetails
from pedidos.domain.states import ALL_STATES

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
ORDER_ID = "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"


class _HtmlReading(HTMLParser):
    """What a mail client sees: the element structure and each text node, entities decoded."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.texts: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def rendered(details: OrderDetails) -> list[EmailMessage]:
    order = Order(ORDER_ID, details, datetime.now(UTC))
    out = []
    for state in ALL_STATES:
        message = message_from_bytes(
            RENDERER.render(order, state, order.accepted_at).data, policy=policy.default
        )
        assert isinstance(message, EmailMessage)
        out.append(message)
    return out


def _html(message: EmailMessage) -> str:
    return part_text(message, "html")


def _text(message: EmailMessage) -> str:
    return part_text(message, "plain")


# Each state's HTML elements for a plain order: hostile text must not add or remove any.
PLAIN_TAGS = [_HtmlReading(_html(m)).tags for m in rendered(make_details())]


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
# An ASCII subject that looks like an encoded word was sent raw, and the reader decoded it.
@example(field="product_name", value="=?utf-8?b?SGk=?=")
def test_text_fields_are_rejected_by_name_or_rendered_safely(field: str, value: str) -> None:
    details = validate(**{field: value})
    if isinstance(details, InvalidOrder):
        assert details.field == field
        return
    accepted = getattr(details, field)
    assert 0 < len(accepted) <= 200
    assert all(ch.isprintable() for ch in accepted)
    for message, plain_tags in zip(rendered(details), PLAIN_TAGS, strict=True):
        assert {name.lower() for name in message} == EXPECTED_HEADERS
        html = _HtmlReading(_html(message))
        # Escaped, not stripped: the markup is the template's own and the reader sees the value.
        assert html.tags == plain_tags
        assert any(accepted in text for text in html.texts), (field, accepted)
        assert accepted in _text(message)
        if field == "product_name":
            assert accepted in str(message["subject"])


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
