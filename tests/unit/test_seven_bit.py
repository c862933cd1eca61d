"""seven_bit: an 8bit e-mail made fit for a server without 8BITMIME."""

from __future__ import annotations

from datetime import UTC, datetime

from devkit.inbox import part_text, transfer_encodings
from devkit.orders import make_details
from pedidos.adapters.email.preview import parsed_email
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.email.seven_bit import seven_bit
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState


def test_seven_bit_keeps_headers_and_text_and_leaves_ascii_parts_alone() -> None:
    order = Order(
        "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41", make_details(product_name="Café"), datetime.now(UTC)
    )
    data = (
        EmailRenderer("Tienda Ñandú <ventas@tienda.cl>")
        .render(order, OrderState.ENVIADO, order.accepted_at)
        .data
    )
    assert transfer_encodings(parsed_email(data)) == ["8bit", "8bit"]
    converted = seven_bit(data)
    assert converted.isascii()
    assert max(len(line) for line in converted.split(b"\r\n")) <= 78
    assert b"\n" not in converted.replace(b"\r\n", b"")
    before, after = parsed_email(data), parsed_email(converted)
    assert transfer_encodings(after) == ["base64", "base64"]
    for subtype in ("plain", "html"):
        assert part_text(after, subtype) == part_text(before, subtype)
    for header in ("From", "To", "Subject", "Date", "Message-ID", "X-Pedidos-Order-Id"):
        assert after[header] == before[header]
    assert seven_bit(converted) == converted  # nothing 8bit left to convert
