"""Renders the customer e-mail for an order entering a state."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pedidos.domain.order import Order
from pedidos.domain.states import ALL_STATES, OrderState

SUBJECTS = {
    OrderState.PROCESANDO: "Recibimos tu pedido: {product}",
    OrderState.PREPARACION: "Tu pedido está en preparación: {product}",
    OrderState.ENVIADO: "Tu pedido va en camino: {product}",
    OrderState.ENTREGADO: "Tu pedido fue entregado: {product}",
    OrderState.FINALIZADO: "Pedido finalizado: {product}",
}
HEADLINES = {
    OrderState.PROCESANDO: "Pedido recibido",
    OrderState.PREPARACION: "Pedido en preparación",
    OrderState.ENVIADO: "Pedido enviado",
    OrderState.ENTREGADO: "Pedido entregado",
    OrderState.FINALIZADO: "Pedido finalizado",
}
GATEWAYS = {
    "MERCADO_PAGO": "MercadoPago",
    "PAYPAL": "PayPal",
    "STRIPE": "Stripe",
    "BANK_TRANSFER": "Transferencia Bancaria",
}
BRANDS = {
    "VISA": "VISA",
    "MASTERCARD": "Mastercard",
    "AMERICAN_EXPRESS": "American Express",
    "DISCOVER": "Discover",
}

_environment = Environment(
    loader=PackageLoader("pedidos.notifications", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    keep_trailing_newline=True,
)


def message_id(order_id: str, state: OrderState, domain: str) -> str:
    """Deterministic, so a resent e-mail is recognisable as the same message."""
    return f"<{order_id}.{state.slug}@{domain}>"


class EmailRenderer:
    def __init__(self, sender: str) -> None:
        name, address = parseaddr(sender)
        if "@" not in address:
            raise ValueError(f"SMTP_FROM {sender!r} has no e-mail address")
        self._sender = Address(display_name=name, addr_spec=address)
        self._domain = address.rsplit("@", 1)[1]

    def render(self, order: Order, state: OrderState, entered_at: datetime) -> EmailMessage:
        details = order.details
        payment = GATEWAYS[details.payment_gateway.value]
        if details.card_brand is not None:
            payment += f" · {BRANDS[details.card_brand.value]} · {details.bank}"
        else:
            payment += f" · {details.bank}"
        context = {
            "subject": SUBJECTS[state].format(product=details.product_name),
            "headline": HEADLINES[state],
            "greeting": "Hola:",
            "order_id": order.order_id,
            "product_name": details.product_name,
            "price": details.price.format(),
            "payment": payment,
            "shipping_address": details.shipping_address,
            "shipping_region": details.shipping_region,
            "state": state.value,
            "step": state.position + 1,
            "steps": len(ALL_STATES),
            "entered_at": entered_at.strftime("%Y-%m-%d %H:%M:%S"),
        }
        text = _environment.get_template(f"{state.slug}.txt.j2").render(context)
        html = _environment.get_template(f"{state.slug}.html.j2").render(context)
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = details.customer_email
        message["Subject"] = context["subject"]
        message["Date"] = format_datetime(entered_at)
        message["Message-ID"] = message_id(order.order_id, state, self._domain)
        message["X-Pedidos-Order-Id"] = order.order_id
        message["X-Pedidos-State"] = state.slug
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message
