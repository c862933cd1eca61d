"""What the status, watch and --follow commands show, in Spanish: an order's status, its changes,
a live table, and what a failed lookup means."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType

import grpc
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from client.follow import Change, WatchFailure
from pedidos.domain.money import InvalidMoney, Money
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.v1 import orders_pb2
from pedidos.wire.proto_mapping import datetime_from_timestamp, state_from_proto

GATEWAY_LABELS = {
    orders_pb2.PAYMENT_GATEWAY_MERCADO_PAGO: "Mercado Pago",
    orders_pb2.PAYMENT_GATEWAY_PAYPAL: "PayPal",
    orders_pb2.PAYMENT_GATEWAY_STRIPE: "Stripe",
    orders_pb2.PAYMENT_GATEWAY_BANK_TRANSFER: "Transferencia bancaria",
}
CARD_LABELS = {
    orders_pb2.CARD_BRAND_VISA: "Visa",
    orders_pb2.CARD_BRAND_MASTERCARD: "Mastercard",
    orders_pb2.CARD_BRAND_AMERICAN_EXPRESS: "American Express",
    orders_pb2.CARD_BRAND_DISCOVER: "Discover",
}
STATE_STYLES = {
    OrderState.PROCESANDO: "yellow",
    OrderState.PREPARACION: "cyan",
    OrderState.ENVIADO: "blue",
    OrderState.ENTREGADO: "magenta",
    OrderState.FINALIZADO: "green",
}
WAITING = "En espera"
# Rows shown by the live table; the rest are counted in its caption.
MAX_ROWS = 25
# Order ids listed after a send; the rest are counted.
MAX_LISTED_IDS = 10
WATCH_COMMAND = "python -m client watch {order_id}"


def when(value: datetime) -> str:
    """Local time, day first, as read in Chile."""
    local = value.astimezone()
    return local.strftime("%d-%m-%Y %H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def price(message: orders_pb2.Money) -> str:
    try:
        return Money(message.amount_minor, message.currency_code or "CLP").format()
    except InvalidMoney:
        return f"{message.amount_minor} {message.currency_code}"


def render_order(order: orders_pb2.Order, console: Console) -> None:
    """`status ORDER_ID`: the current state, when each state was reached, and the details."""
    current = state_from_proto(order.state)
    console.print(f"Pedido {order.order_id}", markup=False)
    console.print(
        Text.assemble(
            "Estado actual: ",
            (current.value, STATE_STYLES[current]) if current else (WAITING, "dim"),
        )
    )
    reached = {
        state_from_proto(item.state): datetime_from_timestamp(item.reached_at)
        for item in order.reached
    }
    timeline = Table(title="Estados", title_justify="left")
    timeline.add_column("Estado")
    timeline.add_column("Fecha y hora")
    timeline.add_row("Aceptado", when(datetime_from_timestamp(order.accepted_at)))
    for state in ALL_STATES:
        at = reached.get(state)
        timeline.add_row(
            Text(state.value, style=STATE_STYLES[state] if at else "dim"),
            when(at) if at else Text("pendiente", style="dim"),
        )
    console.print(timeline)
    if order.trace_id:
        # Where to look the walk up in the tracing backend (Jaeger, Tempo, Kibana APM…).
        console.print(f"Traza: {order.trace_id}", markup=False)

    details = order.details
    facts = Table(title="Detalle", title_justify="left", show_header=False)
    facts.add_column("Campo")
    facts.add_column("Valor", overflow="fold")
    payment = GATEWAY_LABELS.get(details.payment_gateway, "desconocido")
    if details.card_brand in CARD_LABELS:
        payment = f"{payment} ({CARD_LABELS[details.card_brand]})"
    for label, value in (
        ("Producto", details.product_name),
        ("Precio", price(details.price)),
        ("Medio de pago", payment),
        ("Banco", details.bank),
        ("Región", details.shipping_region),
        ("Dirección", details.shipping_address),
        ("Correo", details.customer_email),
    ):
        facts.add_row(label, Text(value))
    console.print(facts)


def describe_change(change: Change) -> str:
    return f"{when(change.reached_at)}  {change.state.value}"


def render_order_ids(order_ids: Sequence[str], console: Console) -> None:
    """After a send: the accepted ids, so each order can be looked up or followed later."""
    noun = "Pedido aceptado" if len(order_ids) == 1 else "Pedidos aceptados"
    console.print(f"{noun}:")
    for number, order_id in enumerate(order_ids[:MAX_LISTED_IDS], 1):
        console.print(f"  {number:>2}. {order_id}", markup=False)
    if len(order_ids) > MAX_LISTED_IDS:
        console.print(f"  … y {len(order_ids) - MAX_LISTED_IDS} más")
    console.print(
        "Para seguir uno: " + WATCH_COMMAND.format(order_id="ID"), markup=False, soft_wrap=True
    )


class WatchLines:
    """`watch ORDER_ID`: a line per change on `out`; on `notes`, when the connection drops and
    when it is back (the watch is opened again until the order is finalized)."""

    def __init__(self, out: Console, notes: Console) -> None:
        self._out = out
        self._notes = notes
        self._broken = False
        self.last: OrderState | None = None

    def change(self, change: Change) -> None:
        if self._broken:
            self._notes.print("Conexión recuperada.")
            self._broken = False
        self._out.print(describe_change(change), markup=False, soft_wrap=True)
        self.last = change.state

    def retry(self, failure: WatchFailure) -> None:
        if not self._broken:
            self._notes.print(
                f"Se perdió el seguimiento ({failure.code.name}: {failure.message}); reintentando…",
                markup=False,
                soft_wrap=True,
            )
            self._broken = True


class FollowView:
    """The sent orders walking through the states: a live table on a terminal, lines elsewhere."""

    def __init__(self, console: Console, order_ids: Sequence[str]) -> None:
        self._console = console
        self._numbers = {order_id: number for number, order_id in enumerate(order_ids, 1)}
        self._latest: dict[str, Change] = {}
        self._live: Live | None = None
        if console.is_terminal:
            self._live = Live(self.render(), console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> FollowView:
        if self._live is not None:
            self._live.start(refresh=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.stop()

    @property
    def finished(self) -> int:
        return sum(1 for change in self._latest.values() if change.state.is_final)

    def __call__(self, change: Change) -> None:
        self._latest[change.order_id] = change
        if self._live is None:
            number = self._numbers.get(change.order_id, 0)
            self._console.print(
                f"Pedido {number} ({change.order_id}): {change.state.value}  "
                f"{when(change.reached_at)}",
                markup=False,
                soft_wrap=True,
            )

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)

    def render(self) -> RenderableType:
        table = Table(title="Seguimiento de pedidos", title_justify="left")
        table.add_column("N°", justify="right")
        table.add_column("Pedido")
        table.add_column("Estado")
        table.add_column("Desde")
        # Orders still walking first, then the finished ones; each group by number.
        rows = sorted(
            self._numbers.items(),
            key=lambda item: (self._is_final(item[0]), item[1]),
        )
        for order_id, number in rows[:MAX_ROWS]:
            change = self._latest.get(order_id)
            if change is None:
                table.add_row(str(number), order_id, Text(WAITING, style="dim"), "")
            else:
                table.add_row(
                    str(number),
                    order_id,
                    Text(change.state.value, style=STATE_STYLES[change.state]),
                    when(change.reached_at),
                )
        counts = Counter(change.state for change in self._latest.values())
        waiting = len(self._numbers) - len(self._latest)
        summary = "  ".join(
            [f"{WAITING}: {waiting}"] + [f"{state.value}: {counts[state]}" for state in ALL_STATES]
        )
        hidden = len(rows) - MAX_ROWS
        caption = f"… y {hidden} pedidos más" if hidden > 0 else ""
        return Group(table, Text(caption, style="dim"), Text(summary))

    def _is_final(self, order_id: str) -> bool:
        change = self._latest.get(order_id)
        return change is not None and change.state.is_final


def problem(exc: grpc.aio.AioRpcError, order_id: str) -> str:
    """What a failed GetOrder/WatchOrder means, for the user."""
    return explain(exc.code(), exc.details() or "", order_id)


def explain(code: grpc.StatusCode, details: str, order_id: str) -> str:
    if code == grpc.StatusCode.NOT_FOUND:
        return f"No existe el pedido {order_id}."
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return f"«{order_id}» no es un id de pedido válido ({details})."
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"El servicio no está disponible ({details}). Inténtalo de nuevo en unos segundos."
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "El productor no respondió a tiempo."
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return "El productor rechazó la credencial: revisa PRODUCER_API_KEY."
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return "La clave de PRODUCER_API_KEY no tiene permiso para consultar pedidos (orders:read)."
    return f"Error {code.name}: {details}"
