"""Renders the customer e-mail for an order entering a state."""

from __future__ import annotations

import re
import struct
from binascii import b2a_base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.charset import BASE64, Charset
from email.header import Header
from email.policy import compat32
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

from babel.dates import get_month_names
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import escape

from pedidos.domain.money import Money
from pedidos.domain.order import Order
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.ports import OutgoingEmail, WireMessage
from pedidos.runtime import tracing
from pedidos.runtime.config import Settings

SUBJECTS = {
    OrderState.PROCESANDO: "Recibimos tu pedido: {product}",
    OrderState.PREPARACION: "Tu pedido está en preparación: {product}",
    OrderState.ENVIADO: "Tu pedido va en camino: {product}",
    OrderState.ENTREGADO: "Tu pedido fue entregado: {product}",
    OrderState.FINALIZADO: "Pedido finalizado: {product}",
}
# The inbox shows the preheader beside the subject; it must add to it, not repeat it.
PREHEADERS = {
    OrderState.PROCESANDO: "Confirmamos tu compra de {product}. Te avisaremos en cada paso.",
    OrderState.PREPARACION: "Estamos empacando {product} en nuestra bodega.",
    OrderState.ENVIADO: "{product} salió de nuestra bodega y va hacia tu dirección.",
    OrderState.ENTREGADO: "{product} llegó a su destino. ¡Que lo disfrutes!",
    OrderState.FINALIZADO: "Tu pedido de {product} está cerrado. Gracias por tu compra.",
}
HEADLINES = {
    OrderState.PROCESANDO: "Pedido recibido",
    OrderState.PREPARACION: "Pedido en preparación",
    OrderState.ENVIADO: "Pedido enviado",
    OrderState.ENTREGADO: "Pedido entregado",
    OrderState.FINALIZADO: "Pedido finalizado",
}
MESSAGES = {
    OrderState.PROCESANDO: "Estamos procesando tu pedido y validando el pago. "
    "Te avisaremos por correo en cada paso, hasta que esté finalizado.",
    OrderState.PREPARACION: "Tu pedido está en preparación: lo estamos empacando en nuestra "
    "bodega para enviártelo cuanto antes.",
    OrderState.ENVIADO: "Tu pedido fue enviado y va en camino a la dirección de despacho.",
    OrderState.ENTREGADO: "Tu pedido fue entregado. ¡Esperamos que lo disfrutes!",
    OrderState.FINALIZADO: "Tu pedido está finalizado. Gracias por comprar con nosotros; "
    "esperamos verte pronto.",
}
# The call to action: follow a live order; once it is closed, look up its history.
TRACK_COMMAND = "python -m client watch {order_id}"
STATUS_COMMAND = "python -m client status {order_id}"
FOLLOW_TITLE, FOLLOW_TEXT = (
    "Sigue tu pedido en vivo",
    "Para ver cada cambio de estado apenas ocurra",
)
HISTORY_TITLE, HISTORY_TEXT = "Consulta tu pedido", "Para ver su historial completo cuando quieras"
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

# Spanish month names from CLDR, looked up once: Babel's formatter costs more than a template.
# Plain dicts: Babel's own mapping resolves aliases in Python on every lookup (~2 µs each).
_MONTHS = dict(get_month_names("abbreviated", locale="es"))
_MONTHS_WIDE = dict(get_month_names("wide", locale="es"))


def _step_time(at: datetime) -> str:
    """Short, for a tracker step: '23 nov, 12:05'. (Integers format in a third of strftime's
    time, and an e-mail shows up to five of these.)"""
    return f"{at.day} {_MONTHS[at.month]}, {at.hour:02}:{at.minute:02}"


def _sent_time(at: datetime) -> str:
    """Long, for the footer: '23 de noviembre de 2026, 12:05'."""
    return f"{at.day} de {_MONTHS_WIDE[at.month]} de {at.year}, {at.hour:02}:{at.minute:02}"


@dataclass(frozen=True, slots=True)
class TrackerStep:
    """One of the five steps as the e-mail shows it: done, current or pending."""

    label: str
    status: str
    when: str


def step_times(order: Order, state: OrderState, entered_at: datetime) -> list[str]:
    """What each tracker step says under its name, as of `state`: earlier steps the time the
    order reached them (when known), the current one `entered_at`, later ones 'pendiente'."""
    times = []
    for step in ALL_STATES:
        if step.position < state.position:
            reached = order.reached.get(step)
            times.append(_step_time(reached) if reached is not None else "completado")
        elif step is state:
            times.append(_step_time(entered_at))
        else:
            times.append("pendiente")
    return times


def _tracker(state: OrderState, times: Sequence[str]) -> list[TrackerStep]:
    return [
        TrackerStep(
            step.value,
            "done" if step.position < state.position else "current" if step is state else "pending",
            when,
        )
        for step, when in zip(ALL_STATES, times, strict=True)
    ]


# The order's own values in an e-mail; every other word depends only on the state and the shop.
SLOTS = ("subject", "preheader", "order_id", "product", "price", "payment", "shipping", "sent_at")
_WHEN_SLOTS = tuple(f"when{position}" for position in range(len(ALL_STATES)))
_SLOT_MARK = "\x1f"  # a control character: no template text contains it
_SLOT_PATTERN = re.compile(f"{_SLOT_MARK}(\\w+){_SLOT_MARK}")
# What markupsafe's escape replaces.
_HTML_SPECIAL = re.compile("[&<>\"']").search
# RFC 5321's limit on a line's octets, CRLF not counted.
_MAX_LINE = 998
# Template octets per line of the HTML part as sent, leaving room for the values in it.
HTML_LINE_BUDGET = 600
_LINE_BREAK_RUN = re.compile(r"\s*\n\s*")
# Where a line break is not just whitespace: compact_html must not touch such a template.
_PREFORMATTED = re.compile(r"<(pre|textarea)\b|white-space:\s*pre", re.IGNORECASE)


def compact_html(html: str, budget: int = HTML_LINE_BUDGET) -> str:
    """`html` in fewer, longer lines, displayed the same: each run of whitespace that holds a
    line break becomes one space or one line break, which HTML collapses to the same single
    space (outside preformatted text, refused here), and the pieces between such runs are
    joined into lines of about `budget` octets (slot marks not counted; a longer piece keeps
    a line of its own).

    A relay reads an e-mail line by line: the template's ~140 short, indented lines made a
    Python relay (the embedded stack's aiosmtpd sink) spend ~30 % more per e-mail than ~20
    long ones, and the indentation was ~8 % of the e-mail's octets.
    """
    if _PREFORMATTED.search(html):
        raise ValueError("compact_html would change preformatted text")
    pieces = [piece for piece in _LINE_BREAK_RUN.split(html) if piece]
    lines: list[str] = []
    line: list[str] = []
    size = 0
    for piece in pieces:
        piece_size = len(_SLOT_PATTERN.sub("", piece).encode("utf-8"))
        # A line must not start with ".", which SMTP would have to double, nor with a value,
        # which could: such a piece stays on the line before, past the budget.
        if line and size + 1 + piece_size > budget and not piece.startswith((".", _SLOT_MARK)):
            lines.append(" ".join(line))
            line, size = [], -1
        line.append(piece)
        size += 1 + piece_size
    if line:
        lines.append(" ".join(line))
    trailing = "\n" if html.endswith("\n") else ""
    return "\n".join(lines) + trailing


class _Skeleton:
    """A template rendered once with a mark where each order value goes; filling the marks
    gives what rendering the template with those values gives (a unit test checks), for a
    fraction of the cost: most of an e-mail is the same for every order."""

    __slots__ = (
        "_constants",
        "_fits",
        "_line_sizes",
        "_longest",
        "_slot_lines",
        "_slots",
        "_starts_fixed",
        "_wire_parts",
    )

    def __init__(self, rendered: str) -> None:
        pieces = _SLOT_PATTERN.split(rendered)
        self._constants = pieces[0::2]
        self._slots = pieces[1::2]
        # The pieces as they go on the wire (UTF-8, CRLF line ends), with a place between each
        # two for a mark's value: filling is a list copy, a slice assignment and a join, all
        # in C, not a Python loop over the marks.
        self._wire_parts: list[bytes] = []
        for constant in self._constants:
            self._wire_parts += (constant.encode("utf-8").replace(b"\n", _CRLF), b"")
        self._wire_parts.pop()
        # For `fill_wire`: each line's own text in octets, the line each mark is on, the
        # longest line holding a mark, whether every line fits alone, and whether every line
        # starts with text of the template that is not a dot (a value could start with one).
        template_text = _SLOT_PATTERN.sub("", rendered).encode("utf-8")
        self._line_sizes = list(map(len, template_text.split(b"\n")))
        self._slot_lines: list[int] = []
        line = 0
        for constant in self._constants[:-1]:
            line += constant.count("\n")
            self._slot_lines.append(line)
        self._longest = max((self._line_sizes[line] for line in self._slot_lines), default=0)
        self._fits = max(self._line_sizes) <= _MAX_LINE
        self._starts_fixed = not any(
            line.startswith((".", _SLOT_MARK)) for line in rendered.split("\n")
        )

    def fill(self, values: Mapping[str, str]) -> str:
        out = [self._constants[0]]
        for slot, constant in zip(self._slots, self._constants[1:], strict=True):
            out.append(values[slot])
            out.append(constant)
        return "".join(out)

    def fill_wire(self, wire_values: Mapping[str, bytes]) -> bytes | None:
        """`fill` in UTF-8 with CRLF line ends, from the values in UTF-8; None unless the
        result is sure to have lines of at most SMTP's 998 octets, none starting with ".":
        no value breaks a line, and every line holding values fits with them (all the values
        in the longest such line, or else each line with its own; cheaper than looking at
        the filled text; None: look). The constant pieces were converted once, not every
        e-mail's whole text (encoding and replacing ~14 KB per e-mail)."""
        if not (self._starts_fixed and self._fits):
            return None
        picked = list(map(wire_values.__getitem__, self._slots))
        values = b"".join(picked)
        if b"\n" in values or b"\r" in values:
            return None
        if len(values) > _MAX_LINE - self._longest:
            sizes = self._line_sizes.copy()
            for line, value in zip(self._slot_lines, picked, strict=True):
                sizes[line] += len(value)
            if max(sizes) > _MAX_LINE:
                return None
        parts = self._wire_parts.copy()
        parts[1::2] = picked
        return b"".join(parts)


_environment = Environment(
    loader=PackageLoader("pedidos.adapters.email", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    keep_trailing_newline=True,
    auto_reload=False,  # templates ship with the package; no stat() per e-mail
)

_HTML_TEMPLATE = _environment.get_template("email.html.j2")
_TEXT_TEMPLATE = _environment.get_template("email.txt.j2")

# "Shortest" encoding measures quoted-printable length per character; base64 is as valid and cheap.
_HEADER_CHARSET = Charset("utf-8")
_HEADER_CHARSET.header_encoding = BASE64

# smtplib sends bytes as they are: they must already use SMTP's CRLF line endings.
_WIRE_POLICY = compat32.clone(linesep="\r\n")
_CRLF = b"\r\n"


# The message is assembled by hand in exactly the layout email.generator gives the equivalent
# MIMEMultipart/MIMEText tree (a unit test compares the bytes): the generator spent most of its
# time re-folding headers that are short, constant or repeated. Folding itself stays stdlib.
def _fold(name: str, value: str) -> bytes:
    """One header line as compat32's generator writes a str value."""
    if value.isascii() and value.isprintable() and len(name) + 2 + len(value) <= 78:
        # Printable ASCII that fits in one line: the Header folding algorithm returns it as is.
        return f"{name}: {value}\r\n".encode("ascii")
    return _WIRE_POLICY.fold_binary(name, value)


def _boundary(order_id: str, slug: str) -> str:
    return f"=_pedidos-{order_id}-{slug}"


def _multipart_type(boundary: str) -> str:
    return f'multipart/alternative; boundary="{boundary}"'


def _split_around_uuid(slug: str) -> tuple[bytes, bytes]:
    """The multipart Content-Type line for `slug`, split where the order id goes.

    The line is too long for one line, so it is folded; folding looks only at lengths,
    whitespace and ";," (none in a UUID), so every UUID folds the same way.
    """
    placeholder = "0" * 36
    folded = _fold("Content-Type", _multipart_type(_boundary(placeholder, slug)))
    before, found, after = folded.partition(placeholder.encode("ascii"))
    if not found:
        raise RuntimeError(f"the Content-Type fold split the boundary: {folded!r}")
    return before, after


_CONTENT_TYPE_AROUND_UUID = {state.slug: _split_around_uuid(state.slug) for state in ALL_STATES}
_UUID_CHARACTERS = frozenset("0123456789abcdefABCDEF-")


def _content_type(order_id: str, slug: str) -> bytes:
    if len(order_id) == 36 and _UUID_CHARACTERS.issuperset(order_id):
        before, after = _CONTENT_TYPE_AROUND_UUID[slug]
        return before + order_id.encode("ascii") + after
    return _fold("Content-Type", _multipart_type(_boundary(order_id, slug)))


@lru_cache(maxsize=4096)
def _subject_header(subject: str) -> bytes:
    """Subjects repeat (a state's text + a catalogue product), and encoding one is costly."""
    # ASCII that looks like an encoded word ("=?…?=") would be decoded by the reader: encode it.
    if subject.isascii() and "=?" not in subject:
        return _fold("Subject", subject)
    # A Header object splits a long subject into valid encoded words.
    encoded = Header(subject, _HEADER_CHARSET, header_name="Subject")
    return _WIRE_POLICY.fold_binary("Subject", encoded)  # type: ignore[arg-type]


def _date_line(at: datetime) -> bytes:
    """The Date header of an e-mail sent at `at`: to the second, so the e-mails of one second
    (hundreds under load) share one formatting (format_datetime cost ~14 µs an e-mail)."""
    return _date_line_to_the_second(at.replace(microsecond=0))


@lru_cache(maxsize=64)
def _date_line_to_the_second(at: datetime) -> bytes:
    return _fold("Date", format_datetime(at))


_MIME_VERSION = _fold("MIME-Version", "1.0")
# The headers MIMEText(body, subtype, charset) sets, in its order, by transfer encoding.
_PART_HEADERS = {
    (subtype, encoding): b"".join(
        (
            _fold("Content-Type", f'text/{subtype}; charset="utf-8"'),
            _MIME_VERSION,
            _fold("Content-Transfer-Encoding", encoding),
        )
    )
    for subtype in ("plain", "html")
    for encoding in ("8bit", "base64")
}


_B64_LINE = 76  # characters per base64 line, as email.base64mime and base64.encodebytes draw them


@lru_cache(maxsize=256)
def _b64_lines(count: int) -> struct.Struct:
    """Splits `count` full base64 lines out of one encoded string in C."""
    return struct.Struct(f"{_B64_LINE}s" * count)


def _base64_crlf(data: bytes) -> bytes:
    """`base64.encodebytes(data)` with CRLF line ends, for under half its cost: one C call
    encodes everything and a cached Struct cuts the lines (encodebytes loops in Python, one
    call per 57 bytes, then a replace copies the result again)."""
    encoded = b2a_base64(data, newline=False)
    full, rest = divmod(len(encoded), _B64_LINE)
    lines = list(_b64_lines(full).unpack_from(encoded))
    if rest:
        lines.append(encoded[full * _B64_LINE :])
    lines.append(b"")
    return _CRLF.join(lines)


def _text_part(
    subtype: str,
    skeleton: _Skeleton,
    values: Mapping[str, str],
    boundary: bytes,
    compact: _Skeleton | None = None,
) -> tuple[bytes, bool]:
    """What MIMEText serialises the skeleton filled with `values` to (headers, blank line,
    body), and whether a line of it starts with "." (DATA would double it). When the skeleton
    vouches for its lines (`_Skeleton.fill_wire`: none over SMTP's limit, none starting with
    ".") the body is assembled on the wire at once; else the text is looked at. `compact`,
    the same text in longer lines (`compact_html`), goes first when its lines hold the values.

    UTF-8 as it is (8bit, RFC 6152) when every line fits SMTP's limit: a quarter fewer bytes
    than base64, and no encoding; SmtpMailer converts it for a server without 8BITMIME. A
    longer line (long values, escaped in HTML), or the multipart boundary in the text, makes
    the part base64, 76 characters a line.
    """
    wire_values = {slot: value.encode("utf-8") for slot, value in values.items()}
    for candidate in (compact, skeleton):
        wire = None if candidate is None else candidate.fill_wire(wire_values)
        if wire is not None and boundary not in wire:
            return _PART_HEADERS[subtype, "8bit"] + _CRLF + wire, False
    encoded = skeleton.fill(values).encode("utf-8")
    lines = encoded.split(b"\n")
    short_lines = max(map(len, lines)) <= _MAX_LINE and b"\r" not in encoded
    if not short_lines or boundary in encoded:
        return _PART_HEADERS[subtype, "base64"] + _CRLF + _base64_crlf(encoded), False
    dot_led = any(line.startswith(b".") for line in lines)
    return _PART_HEADERS[subtype, "8bit"] + _CRLF + encoded.replace(b"\n", _CRLF), dot_led


def message_id(order_id: str, state: OrderState, domain: str) -> str:
    """Deterministic, so a resent e-mail is recognisable as the same message."""
    return f"<{order_id}.{state.slug}@{domain}>"


def _trace_header() -> bytes:
    """`X-Trace-Id` with the step's trace, so a customer's e-mail leads to its trace; nothing
    when tracing is off or the trace is not sampled (the snapshots in docs/emails have none)."""
    trace_id = tracing.current_trace_id()
    return b"" if trace_id is None else _fold("X-Trace-Id", trace_id)


# The consumer's CONSUMER_MAX_OPEN_ORDERS by default.
OPEN_ORDERS: int = Settings.model_fields["consumer_max_open_orders"].default


class EmailRenderer:
    def __init__(self, sender: str, open_orders: int = OPEN_ORDERS) -> None:
        """`open_orders`: how many orders may walk at once, their e-mails interleaved."""
        name, address = parseaddr(sender)
        if "@" not in address:
            raise ValueError(f"SMTP_FROM {sender!r} has no e-mail address")
        self._sender_address = address
        self._from_header = formataddr((name, address), charset="utf-8")
        self._from_line = _fold("From", self._from_header)
        self._domain = address.rsplit("@", 1)[1]
        self._shop_name = name or self._domain
        # Babel formats a price in ~20 µs, more than the rest of an e-mail's values: once per
        # order, not per e-mail. Between two of an order's e-mails each other open order may
        # format its own: with fewer entries than open orders, a loaded consumer (1,024 before)
        # missed 96 % of the time.
        self._price = lru_cache(maxsize=2 * open_orders)(Money.format)
        marks = {slot: f"{_SLOT_MARK}{slot}{_SLOT_MARK}" for slot in SLOTS + _WHEN_SLOTS}
        self._skeletons = {
            state: (_Skeleton(text), _Skeleton(html), _Skeleton(compact_html(html)))
            for state in ALL_STATES
            for text, html in [self.bodies_from_templates(state, marks)]
        }

    def _context(self, state: OrderState, values: Mapping[str, str]) -> dict[str, object]:
        return {
            "subject": values["subject"],
            "preheader": values["preheader"],
            "headline": HEADLINES[state],
            "greeting": "Hola:",
            "message": MESSAGES[state],
            "shop_name": self._shop_name,
            "shop_address": self._sender_address,
            "order_id": values["order_id"],
            "state": state.value,
            "step": state.position + 1,
            "steps": len(ALL_STATES),
            "tracker": _tracker(state, [values[slot] for slot in _WHEN_SLOTS]),
            "cta_title": HISTORY_TITLE if state.is_final else FOLLOW_TITLE,
            "cta_text": HISTORY_TEXT if state.is_final else FOLLOW_TEXT,
            "track_command": (STATUS_COMMAND if state.is_final else TRACK_COMMAND).format(
                order_id=values["order_id"]
            ),
            # (label, value, emphasised)
            "summary": [
                ("N° de pedido", values["order_id"], False),
                ("Producto", values["product"], False),
                ("Total", values["price"], True),
                ("Pago", values["payment"], False),
                ("Envío a", values["shipping"], False),
            ],
            "sent_at": values["sent_at"],
        }

    def bodies_from_templates(
        self, state: OrderState, values: Mapping[str, str]
    ) -> tuple[str, str]:
        """Plain text and HTML rendered by Jinja2 itself (render() fills cached skeletons)."""
        context = self._context(state, values)
        return _TEXT_TEMPLATE.render(context), _HTML_TEMPLATE.render(context)

    def values(self, order: Order, state: OrderState, entered_at: datetime) -> dict[str, str]:
        """The order's values for the slots of `state`'s e-mail, as text (not yet escaped)."""
        details = order.details
        payment = GATEWAYS[details.payment_gateway.value]
        if details.card_brand is not None:
            payment += f" · {BRANDS[details.card_brand.value]} · {details.bank}"
        else:
            payment += f" · {details.bank}"
        product = details.product_name
        values = {
            "subject": SUBJECTS[state].format(product=product),
            "preheader": PREHEADERS[state].format(product=product),
            "order_id": order.order_id,
            "product": product,
            "price": self._price(details.price),
            "payment": payment,
            "shipping": f"{details.shipping_address}, {details.shipping_region}",
            "sent_at": _sent_time(entered_at),
        }
        values.update(zip(_WHEN_SLOTS, step_times(order, state, entered_at), strict=True))
        return values

    def render(self, order: Order, state: OrderState, entered_at: datetime) -> OutgoingEmail:
        """The e-mail for `order` entering `state` at `entered_at`.

        The tracker shows the earlier steps with their times from `order.reached`, which the
        consumer fills as the order walks; a step missing there shows as done without a time.
        """
        details = order.details
        values = self.values(order, state, entered_at)
        subject = values["subject"]
        text_skeleton, html_skeleton, compact_skeleton = self._skeletons[state]
        # The same escaping as the template's autoescape; most values have nothing to escape,
        # and finding that out is a fifth of escaping them.
        escaped = {
            slot: str(escape(value)) if _HTML_SPECIAL(value) else value
            for slot, value in values.items()
        }
        identifier = message_id(order.order_id, state, self._domain)
        # A fixed boundary spares drawing one; a part that contains it is sent as base64, which
        # cannot ("-" is not in the base64 alphabet). Header values are safe here: the domain
        # rejects control characters in every field.
        boundary = _boundary(order.order_id, state.slug).encode("ascii")
        text_part, text_dot_led = _text_part("plain", text_skeleton, values, boundary)
        html_part, html_dot_led = _text_part(
            "html", html_skeleton, escaped, boundary, compact_skeleton
        )
        # A WireMessage when no line starts with ".": every other line is a header (a name
        # first, or folded: a space first), a boundary ("--"), base64 or text that was checked.
        wire = WireMessage if not (text_dot_led or html_dot_led) else bytes
        data = wire(
            b"".join(
                (
                    _content_type(order.order_id, state.slug),
                    _MIME_VERSION,
                    self._from_line,
                    _fold("To", details.customer_email),
                    _subject_header(subject),
                    _date_line(entered_at),
                    _fold("Message-ID", identifier),
                    _fold("X-Pedidos-Order-Id", order.order_id),
                    _fold("X-Pedidos-State", state.slug),
                    _trace_header(),
                    _CRLF,
                    b"--" + boundary + _CRLF,
                    text_part,
                    _CRLF + b"--" + boundary + _CRLF,
                    html_part,
                    _CRLF + b"--" + boundary + b"--" + _CRLF,
                )
            )
        )
        return OutgoingEmail(
            sender=self._sender_address,
            recipient=details.customer_email,
            message_id=identifier,
            data=data,
        )
