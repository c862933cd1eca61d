"""E-mails go out as UTF-8 (8bit parts) to a server offering 8BITMIME, declared with
BODY=8BITMIME; a server without it gets the same e-mail with base64 parts (RFC 6152)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from aiosmtpd.controller import Controller

from admin.mailsink import MaildirHandler, build_controller
from devkit.inbox import part_text, transfer_encodings
from devkit.net import free_port
from devkit.orders import make_details
from pedidos.adapters.email.preview import parsed_email
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.smtp_mailer import SmtpMailer, SmtpSettings
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.ports import OutgoingEmail

pytestmark = pytest.mark.integration

ORDER_ID = "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"


def email(shop: str = "Tienda Ñandú <ventas@tienda.cl>") -> OutgoingEmail:
    order = Order(ORDER_ID, make_details(product_name="Café de Colombia"), datetime.now(UTC))
    return EmailRenderer(shop).render(order, OrderState.ENVIADO, order.accepted_at)


@pytest.fixture(params=[True, False], ids=["8bitmime", "7bit-only"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Controller, bool]]:
    """An aiosmtpd sink, offering 8BITMIME or not."""
    offered = bool(request.param)
    controller = build_controller(
        host="127.0.0.1", port=free_port(), maildir=tmp_path / "mail", eight_bit_mime=offered
    )
    controller.start()
    try:
        yield controller, offered
    finally:
        controller.stop()


def received(maildir: Path) -> list[bytes]:
    return [path.read_bytes() for path in (maildir / "new").iterdir()]


def test_the_mailer_sends_8bit_where_offered_and_base64_where_not(
    sink: tuple[Controller, bool], tmp_path: Path
) -> None:
    controller, offered = sink
    handler = cast(MaildirHandler, controller.handler)
    sent = email()
    assert not sent.data.isascii()  # rendered with 8bit parts
    mailer = SmtpMailer(SmtpSettings(host="127.0.0.1", port=controller.port, connections=1))
    try:
        mailer.send(sent)
        mailer.send(email(shop=".Tienda <ventas@tienda.cl>"))  # a line starting with a dot
    finally:
        mailer.close()
    (first_options, second_options) = list(handler.mail_options)
    assert ("BODY=8BITMIME" in first_options) is offered
    assert ("BODY=8BITMIME" in second_options) is offered
    stored = received(tmp_path / "mail")
    assert len(stored) == 2
    first, second = sorted(map(parsed_email, stored), key=lambda m: "Ñandú" not in str(m["From"]))
    if offered:
        assert transfer_encodings(first) == ["8bit", "8bit"]
    else:
        assert all(data.isascii() for data in stored)
        assert transfer_encodings(first) == ["base64", "base64"]
    original = parsed_email(sent.data)
    for subtype in ("plain", "html"):
        assert part_text(first, subtype) == part_text(original, subtype)
    assert "Café de Colombia" in part_text(first, "plain")
    # The dot-led footer line arrives with one dot: smtplib doubled it, the server undid it.
    assert "\n.Tienda · ventas@tienda.cl\n" in part_text(second, "plain")
    assert first["Subject"] == original["Subject"]
    assert first["Message-ID"] == original["Message-ID"]
