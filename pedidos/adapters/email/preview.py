"""`python -m pedidos.adapters.email.preview --out docs/emails`: the five e-mails of one sample
order, as HTML, plain text and a Chromium screenshot each, for readers of the docs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from pedidos.adapters.email.chromium import ChromiumMissing, screenshot
from pedidos.adapters.email.render import EmailRenderer
from pedidos.domain.order import Order, OrderDetails
from pedidos.domain.states import ALL_STATES, OrderState

SAMPLE_SENDER = "Tienda Pedidos <ventas@tienda.cl>"
SAMPLE_ORDER_ID = "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"
# Plausible gaps between the steps: minutes to prepare, a day on the road, days to close.
SAMPLE_TIMES = {
    OrderState.PROCESANDO: datetime(2026, 11, 23, 10, 15, tzinfo=UTC),
    OrderState.PREPARACION: datetime(2026, 11, 23, 10, 42, tzinfo=UTC),
    OrderState.ENVIADO: datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
    OrderState.ENTREGADO: datetime(2026, 11, 25, 16, 5, tzinfo=UTC),
    OrderState.FINALIZADO: datetime(2026, 11, 28, 16, 5, tzinfo=UTC),
}
# Tall enough for the longest e-mail at 680 px wide; the rest is the page background.
SCREENSHOT_HEIGHT = 1040


def sample_order() -> Order:
    """A fixed order that reached every state at fixed times: stable snapshots and pictures."""
    details = OrderDetails.create(
        product_name="Silla Gamer",
        price_minor=129_990,
        currency="CLP",
        payment_gateway="MERCADO_PAGO",
        card_brand="VISA",
        bank="Banco de Chile",
        shipping_region="Región Metropolitana",
        shipping_address="Calle Pajaritos 300, Maipú",
        customer_email="cliente@example.cl",
    )
    order = Order(SAMPLE_ORDER_ID, details, SAMPLE_TIMES[OrderState.PROCESANDO])
    for state in ALL_STATES:
        order.enter(state, SAMPLE_TIMES[state])
    return order


def sample_email(state: OrderState) -> EmailMessage:
    """The sample order's e-mail for `state`, parsed back the way a mail client reads it."""
    order = sample_order()
    return parsed_email(
        EmailRenderer(SAMPLE_SENDER).render(order, state, order.reached[state]).data
    )


def parsed_email(data: bytes) -> EmailMessage:
    """Wire bytes parsed as a mail client parses them."""
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, subtype: str) -> str:
    """The text of the `plain` or `html` part with "\n" line ends, as a mail client shows it
    (an 8bit part parsed from the wire keeps its CRLF)."""
    part = message.get_body((subtype,))
    if part is None:
        raise ValueError(f"the e-mail has no text/{subtype} part")
    return str(part.get_content()).replace("\r\n", "\n")


def write_previews(out: Path, pictures: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number, state in enumerate(ALL_STATES, 1):
        message = sample_email(state)
        stem = out / f"{number}-{state.slug}"
        page = stem.with_suffix(".html")
        page.write_text(body(message, "html"), encoding="utf-8")
        written.append(page)
        if pictures:
            png = stem.with_suffix(".png")
            screenshot(page, png, SCREENSHOT_HEIGHT)
            written.append(png)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pedidos.adapters.email.preview",
        description="Writes the five e-mails of a sample order as HTML and PNG screenshots.",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/emails"), help="output folder")
    parser.add_argument("--html-only", action="store_true", help="skip the screenshots")
    args = parser.parse_args(argv)
    try:
        written = write_previews(args.out, pictures=not args.html_only)
    except ChromiumMissing as exc:
        print(f"{exc}; use --html-only to write only the HTML", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
