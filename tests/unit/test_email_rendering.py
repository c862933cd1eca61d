from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from pedidos.domain.order import Order
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.notifications.render import EmailRenderer, message_id
from tests.unit.factories import make_details

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ORDER_ID = "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"


def render(state: OrderState, **details: object) -> EmailMessage:
    """Render, then parse the wire bytes the way a mail client would."""
    order = Order(ORDER_ID, make_details(**details), T0)
    email = EmailRenderer("Tienda <ventas@tienda.cl>").render(order, state, T0)
    assert email.sender == "ventas@tienda.cl"
    assert email.recipient == order.details.customer_email
    parsed = message_from_bytes(email.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Message-ID"] == email.message_id
    return parsed


@pytest.mark.parametrize(
    ("state", "subject_start", "phrase"),
    [
        (OrderState.PROCESANDO, "Recibimos tu pedido", "Estamos procesando tu pedido"),
        (OrderState.PREPARACION, "Tu pedido está en preparación", "en preparación"),
        (OrderState.ENVIADO, "Tu pedido va en camino", "fue enviado"),
        (OrderState.ENTREGADO, "Tu pedido fue entregado", "fue entregado"),
        (OrderState.FINALIZADO, "Pedido finalizado", "finalizado"),
    ],
)
def test_each_state_has_its_spanish_subject_and_both_parts(
    state: OrderState, subject_start: str, phrase: str
) -> None:
    message = render(state)
    assert message["Subject"].startswith(subject_start)
    assert message["To"] == "cliente@example.cl"
    assert message["From"] == "Tienda <ventas@tienda.cl>"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (text, html):
        assert phrase in body
        assert "$129.990" in body  # CLP, formatted for Chile
        assert ORDER_ID in body
        assert f"{state.position + 1} de 5" in body


def test_message_id_is_deterministic_per_order_and_state() -> None:
    ids = {render(state)["Message-ID"] for state in ALL_STATES}
    assert len(ids) == 5
    assert render(OrderState.ENVIADO)["Message-ID"] == message_id(
        ORDER_ID, OrderState.ENVIADO, "tienda.cl"
    )
    assert render(OrderState.ENVIADO)["Message-ID"] == f"<{ORDER_ID}.enviado@tienda.cl>"


def test_hostile_input_is_escaped_in_html_and_kept_as_text() -> None:
    message = render(
        OrderState.ENVIADO,
        shipping_address="<script>alert('x')</script> & Co",
        product_name='<img src=x onerror="alert(1)">',
    )
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;" in html
    assert "&amp; Co" in html
    text = message.get_body(("plain",)).get_content()
    assert "<script>alert('x')</script> & Co" in text
    # The product name is in the subject too: still one header line, no injection.
    assert "\n" not in message["Subject"]


def test_usd_prices_keep_their_cents() -> None:
    message = render(OrderState.PROCESANDO, price_minor=1999, currency="USD")
    assert "US$19,99" in message.get_body(("plain",)).get_content()


def test_bank_transfer_payment_line_has_no_card() -> None:
    message = render(OrderState.PROCESANDO, payment_gateway="BANK_TRANSFER", card_brand=None)
    assert "Transferencia Bancaria · Banco de Chile" in message.get_body(("plain",)).get_content()


def test_wire_format_uses_crlf_and_short_lines() -> None:
    order = Order(ORDER_ID, make_details(shipping_address="x" * 200), T0)
    data = EmailRenderer("Tienda <ventas@tienda.cl>").render(order, OrderState.ENVIADO, T0).data
    assert b"\n" not in data.replace(b"\r\n", b"")  # no bare LF: smtplib sends bytes unchanged
    assert max(len(line) for line in data.split(b"\r\n")) <= 998  # RFC 5321 line limit
