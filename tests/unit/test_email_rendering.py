import os
import re
from base64 import encodebytes
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.charset import BASE64, Charset
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, parseaddr
from html.parser import HTMLParser
from typing import cast

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from devkit.inbox import part_text, transfer_encodings
from devkit.orders import make_details
from pedidos.adapters.email.preview import parsed_email
from pedidos.adapters.email.render import (
    HTML_LINE_BUDGET,
    SUBJECTS,
    EmailRenderer,
    _base64_crlf,
    _fold,
    _Skeleton,
    _text_part,
    compact_html,
    message_id,
)
from pedidos.domain.money import Money
from pedidos.domain.order import InvalidOrder, Order
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.ports import WireMessage

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
    text = part_text(message, "plain")
    html = part_text(message, "html")
    for body in (text, html):
        assert phrase in body
        assert "$129.990" in body  # CLP, formatted for Chile
        assert ORDER_ID in body
        assert f"{state.position + 1} de 5" in body


def test_the_date_header_is_the_second_each_e_mail_was_sent() -> None:
    """Formatted once per second and shared: e-mails of the same second carry the same Date,
    the next second's its own, in whichever order they come."""
    renderer = EmailRenderer("Tienda <ventas@tienda.cl>")
    order = Order(ORDER_ID, make_details(), T0)
    sent = [T0 + timedelta(seconds=s) for s in (1.2, 0.3, 1.9, 61.0, 0.999)]
    dates = [
        message_from_bytes(renderer.render(order, OrderState.PROCESANDO, at).data)["Date"]
        for at in sent
    ]
    assert dates == [format_datetime(at.replace(microsecond=0)) for at in sent]
    assert dates[0] == dates[2] != dates[1] == dates[4]


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
    html = part_text(message, "html")
    assert "<script>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;" in html
    assert "&amp; Co" in html
    text = part_text(message, "plain")
    assert "<script>alert('x')</script> & Co" in text
    # The product name is in the subject too: still one header line, no injection.
    assert "\n" not in message["Subject"]


def test_usd_prices_keep_their_cents() -> None:
    message = render(OrderState.PROCESANDO, price_minor=1999, currency="USD")
    assert "US$19,99" in part_text(message, "plain")


def test_bank_transfer_payment_line_has_no_card() -> None:
    message = render(OrderState.PROCESANDO, payment_gateway="BANK_TRANSFER", card_brand=None)
    assert "Transferencia Bancaria · Banco de Chile" in part_text(message, "plain")


def test_wire_format_uses_crlf_and_short_lines() -> None:
    order = Order(ORDER_ID, make_details(shipping_address="x" * 200), T0)
    data = EmailRenderer("Tienda <ventas@tienda.cl>").render(order, OrderState.ENVIADO, T0).data
    assert b"\n" not in data.replace(b"\r\n", b"")  # no bare LF: smtplib sends bytes unchanged
    assert max(len(line) for line in data.split(b"\r\n")) <= 998  # RFC 5321 line limit


def stdlib_wire_bytes(sender: str, order: Order, state: OrderState, data: bytes) -> bytes:
    """The same e-mail built as a MIMEMultipart tree and flattened by email.generator."""
    parts = cast(list[Message], message_from_bytes(data, policy=policy.compat32).get_payload())
    # An 8bit part's payload comes back with the wire's CRLF line ends.
    text, html = (
        cast(bytes, part.get_payload(decode=True)).decode().replace("\r\n", "\n") for part in parts
    )
    reference = MIMEMultipart("alternative", boundary=f"=_pedidos-{order.order_id}-{state.slug}")
    name, address = parseaddr(sender)
    reference["From"] = formataddr((name, address), charset="utf-8")
    reference["To"] = order.details.customer_email
    subject = SUBJECTS[state].format(product=order.details.product_name)
    charset = Charset("utf-8")
    charset.header_encoding = BASE64
    # email accepts a Header where its stubs say str.
    reference["Subject"] = (
        subject if subject.isascii() else cast(str, Header(subject, charset, header_name="Subject"))
    )
    reference["Date"] = format_datetime(T0)
    reference["Message-ID"] = message_id(order.order_id, state, address.rsplit("@", 1)[1])
    reference["X-Pedidos-Order-Id"] = order.order_id
    reference["X-Pedidos-State"] = state.slug
    boundary = reference.get_boundary()
    assert boundary is not None
    # email takes a Charset where its stubs say str.
    reference.attach(MIMEText(text, "plain", cast(str, body_charset(text, boundary))))
    reference.attach(MIMEText(html, "html", cast(str, body_charset(html, boundary))))
    return reference.as_bytes(policy=policy.compat32.clone(linesep="\r\n"))


def body_charset(body: str, boundary: str) -> Charset:
    """UTF-8 as it is (8bit) unless a line is longer than SMTP's 998 octets or the body holds
    the boundary: then base64, as email's own "utf-8"."""
    charset = Charset("utf-8")
    longest = max(len(line.encode()) for line in body.split("\n"))
    if longest <= 998 and "--" + boundary not in body and "\r" not in body:
        # None (the stubs say int): encode_7or8bit, "8bit" for any non-ASCII text.
        charset.body_encoding = None  # type: ignore[assignment]
    return charset


NAMES = st.one_of(
    st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), max_size=200),
    st.text("ab ,;", max_size=200),
    # ASCII subjects around the one-line limit (78 characters with "Subject: ").
    st.integers(40, 70).map(lambda n: "x" * n),
    st.sampled_from(["Silla Gamer", "Ñandú " * 33, "x" * 200, "a, b; c " * 25, "漢字🛒"]),
    # Dots where folding could start a line with one (DATA would have to double it).
    st.integers(1, 90).map(lambda n: ". " * n),
    st.sampled_from(["." * 200, ".Silla", "x" * 60 + " ." + "y" * 30]),
)


@settings(max_examples=200, deadline=None)
@given(
    product_name=NAMES,
    shipping_address=NAMES,
    customer_email=st.one_of(
        st.sampled_from(
            ["a@b.cl", "cliente@exámple.cl", "x" * 64 + "@" + ".".join(["d" * 60] * 3)]
        ),
        st.integers(60, 64).flatmap(
            lambda n: st.integers(6, 20).map(lambda d: f"{'x' * n}@{'d' * d}.cl")
        ),
    ),
    sender=st.sampled_from(
        ["Tienda <ventas@tienda.cl>", "ventas@tienda.cl", "Tienda Ñandú " * 6 + "<v@tienda.cl>"]
    ),
    state=st.sampled_from(ALL_STATES),
    order_id=st.sampled_from([ORDER_ID, ORDER_ID.upper(), "o-1", "x" * 60, "a;b,c" * 8]),
)
def test_wire_bytes_are_what_the_stdlib_generator_writes(
    product_name: str,
    shipping_address: str,
    customer_email: str,
    sender: str,
    state: OrderState,
    order_id: str,
) -> None:
    """The message is assembled by hand for speed; it must stay byte-for-byte the stdlib one."""
    try:
        details = make_details(
            product_name=product_name,
            shipping_address=shipping_address,
            customer_email=customer_email,
        )
    except InvalidOrder:
        assume(False)
    order = Order(order_id, details, T0)
    data = EmailRenderer(sender).render(order, state, T0).data
    assert data == stdlib_wire_bytes(sender, order, state, data)
    # Marked as DATA-ready, so the mailer sends it without looking for a dot-led line.
    assert type(data) is WireMessage
    assert not data.startswith(b".")
    assert b"\n." not in data
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    parsed = message_from_bytes(data, policy=policy.default)
    assert parsed["Subject"] == SUBJECTS[state].format(product=details.product_name)
    assert parsed["To"] == details.customer_email
    text = part_text(parsed, "plain")
    html = part_text(parsed, "html")
    assert details.shipping_address in text
    assert escape(details.shipping_address) in html


@settings(max_examples=500, deadline=None)
@given(
    name=st.sampled_from(["To", "Subject", "X-Pedidos-Order-Id"]),
    value=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=90),
)
def test_header_lines_fold_like_the_stdlib(name: str, value: str) -> None:
    """The shortcut for one-line printable ASCII headers writes what compat32 would."""
    assert _fold(name, value) == policy.compat32.clone(linesep="\r\n").fold_binary(name, value)


class _Tracker(HTMLParser):
    """Each tracker step's attributes and its text, as a mail client would read them."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.steps: list[dict[str, str | None]] = []
        self.texts: list[list[str]] = []
        self._depth = 0
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "td" and found.get("class") == "tracker-step":
            self.steps.append(found)
            self.texts.append([])
            self._depth = 1
        elif tag == "td" and self._depth:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth and data.strip():
            self.texts[-1].append(data.strip())


def test_tracker_marks_the_current_step_and_shows_each_reached_time() -> None:
    order = Order(ORDER_ID, make_details(), T0)
    for minutes, state in enumerate(ALL_STATES[:3]):
        order.enter(state, T0 + timedelta(minutes=5 * minutes))
    email = EmailRenderer("Tienda <ventas@tienda.cl>").render(
        order, OrderState.ENVIADO, order.reached[OrderState.ENVIADO]
    )
    parsed = message_from_bytes(email.data, policy=policy.default)
    tracker = _Tracker(part_text(parsed, "html"))
    assert [step["data-status"] for step in tracker.steps] == [
        "done", "done", "current", "pending", "pending"
    ]  # fmt: skip
    assert [step.get("aria-current") for step in tracker.steps] == [None, None, "step", None, None]
    assert tracker.texts == [
        ["✓", "Procesando", "23 nov, 12:00"],
        ["✓", "Preparación", "23 nov, 12:05"],
        ["3", "Enviado", "23 nov, 12:10"],
        ["4", "Entregado", "pendiente"],
        ["5", "Finalizado", "pendiente"],
    ]
    text = part_text(parsed, "plain")
    assert "  [x] Preparación  23 nov, 12:05\n" in text
    assert "  [>] Enviado      23 nov, 12:10  <- estado actual\n" in text
    assert "  [ ] Entregado    pendiente\n" in text


def test_steps_reached_before_the_renderer_knew_them_show_as_done_without_a_time() -> None:
    html = part_text(render(OrderState.ENTREGADO), "html")
    assert [texts[-1] for texts in _Tracker(html).texts] == [
        "completado", "completado", "completado", "23 nov, 12:00", "pendiente"
    ]  # fmt: skip


def test_each_state_has_its_own_hidden_preheader_first_in_the_body() -> None:
    preheaders = []
    for state in ALL_STATES:
        html = part_text(render(state, product_name="Silla & Mesa"), "html")
        first = html.split("<body", 1)[1].split(">", 2)
        assert first[1].startswith('\n<div style="display: none;')
        preheaders.append(first[2].split("</div>", 1)[0])
    assert len(set(preheaders)) == 5
    assert all("Silla &amp; Mesa" in preheader for preheader in preheaders)


@pytest.mark.parametrize(
    ("state", "command"),
    [
        (OrderState.PROCESANDO, "watch"),
        (OrderState.ENTREGADO, "watch"),
        (OrderState.FINALIZADO, "status"),
    ],
)
def test_call_to_action_gives_the_command_to_follow_the_order(
    state: OrderState, command: str
) -> None:
    message = render(state)
    for subtype in ("plain", "html"):
        assert f"python -m client {command} {ORDER_ID}" in part_text(message, subtype)


def test_layout_is_a_600px_table_with_light_and_dark_colour_schemes() -> None:
    html = part_text(render(OrderState.PROCESANDO), "html")
    assert 'class="container" width="600"' in html
    assert "max-width: 600px" in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "@media (prefers-color-scheme: dark)" in html
    # The footer names the sender.
    assert "<strong>Tienda</strong> · ventas@tienda.cl" in html


@settings(max_examples=200, deadline=None)
@given(
    product_name=NAMES,
    shipping_address=NAMES,
    state=st.sampled_from(ALL_STATES),
    reached=st.integers(0, 5),
)
def test_filled_skeletons_are_what_the_templates_render(
    product_name: str, shipping_address: str, state: OrderState, reached: int
) -> None:
    """render() fills per-state skeletons for speed; it must write what Jinja2 renders, the
    HTML in fewer lines (`compact_html`): the same but for runs of whitespace holding a line
    break, which a browser shows as one space either way."""
    try:
        details = make_details(product_name=product_name, shipping_address=shipping_address)
    except InvalidOrder:
        assume(False)
    order = Order(ORDER_ID, details, T0)
    for minutes, step in enumerate(ALL_STATES[:reached]):
        order.enter(step, T0 + timedelta(minutes=minutes))
    renderer = EmailRenderer("Tienda <ventas@tienda.cl>")
    parsed = message_from_bytes(renderer.render(order, state, T0).data, policy=policy.default)
    expected = renderer.bodies_from_templates(state, renderer.values(order, state, T0))
    assert part_text(parsed, "plain") == expected[0]
    assert same_page(part_text(parsed, "html")) == same_page(expected[1])


def same_page(html: str) -> str:
    """`html` with each run of whitespace holding a line break made one space, as HTML
    displays it (outside preformatted text)."""
    return re.sub(r"\s*\n\s*", " ", html)


def test_the_html_goes_in_few_long_lines_that_show_the_same_page() -> None:
    order = Order(ORDER_ID, make_details(), T0)
    renderer = EmailRenderer("Tienda <ventas@tienda.cl>")
    for state in ALL_STATES:
        html = part_text(parsed_email(renderer.render(order, state, T0).data), "html")
        template = renderer.bodies_from_templates(state, renderer.values(order, state, T0))[1]
        assert same_page(html) == same_page(template)
        assert html.count("\n") <= template.count("\n") / 4
        assert max(map(len, html.encode().split(b"\n"))) <= 998


def test_compact_html_joins_lines_up_to_its_budget_and_keeps_a_longer_piece_whole() -> None:
    html = "<p>uno</p>\n    <p>dos</p>\n\n  <p>\x1fproduct\x1f</p>\n" + "<b>x</b>" * 4 + "\n"
    compact = compact_html(html, budget=24)
    # The mark counts for nothing: "<p>uno</p> <p>dos</p> <p></p>" is 28 octets.
    assert compact == (
        "<p>uno</p> <p>dos</p>\n<p>\x1fproduct\x1f</p>\n<b>x</b><b>x</b><b>x</b><b>x</b>\n"
    )
    assert same_page(compact) == same_page(html)
    assert compact_html(html, budget=HTML_LINE_BUDGET).count("\n") == 1


@pytest.mark.parametrize("budget", [10, 50, 200, 400, HTML_LINE_BUDGET, 900])
def test_no_compact_line_starts_with_a_dot_or_a_value(budget: int) -> None:
    """SMTP doubles a line's leading dot, and the renderer vouches that its lines have none
    (`WireMessage`): CSS rules (".fg { … }") and values stay on the line before."""
    renderer = EmailRenderer("Tienda <ventas@tienda.cl>")
    values = renderer.values(Order(ORDER_ID, make_details(), T0), OrderState.ENVIADO, T0)
    marks = {slot: f"\x1f{slot}\x1f" for slot in values}
    html = renderer.bodies_from_templates(OrderState.ENVIADO, marks)[1]
    lines = compact_html(html, budget).split("\n")
    assert not [line for line in lines if line.startswith((".", "\x1f"))]
    assert same_page("\n".join(lines)) == same_page(html)


@pytest.mark.parametrize(
    "html",
    ["<pre>a\n  b</pre>\n", "<textarea>a\nb</textarea>", '<p style="white-space: pre">a</p>'],
)
def test_compact_html_refuses_text_whose_line_breaks_show(html: str) -> None:
    with pytest.raises(ValueError, match="preformatted"):
        compact_html(html)


def test_values_too_long_for_the_long_lines_fall_back_to_the_template_lines_not_base64() -> None:
    # 200 characters in the bank and the address (400 octets of UTF-8): the compact line
    # holding both (payment and shipping) would pass SMTP's 998 octets; the template's own
    # short lines hold them.
    order = Order(ORDER_ID, make_details(bank="B" * 200, shipping_address="Ñ" * 200), T0)
    data = EmailRenderer("Tienda <ventas@tienda.cl>").render(order, OrderState.ENVIADO, T0).data
    assert encodings(data) == ["8bit", "8bit"]
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    html = part_text(parsed_email(data), "html")
    assert "B" * 200 in html
    assert "Ñ" * 200 in html
    assert html.count("\n") > 100


@pytest.mark.parametrize("size", [*range(0, 240), 57 * 260 - 1, 57 * 260, 57 * 260 + 1, 19_000])
def test_base64_lines_are_what_encodebytes_draws_with_crlf(size: int) -> None:
    """Every length around a line's 57 input bytes, and an HTML part's size."""
    data = os.urandom(size)
    assert _base64_crlf(data) == encodebytes(data).replace(b"\n", b"\r\n")


def encodings(data: bytes) -> list[str]:
    return transfer_encodings(parsed_email(data))


def test_parts_are_utf8_as_they_are_a_quarter_smaller_than_base64() -> None:
    order = Order(ORDER_ID, make_details(), T0)
    data = EmailRenderer("Tienda <ventas@tienda.cl>").render(order, OrderState.ENVIADO, T0).data
    assert encodings(data) == ["8bit", "8bit"]
    assert type(data) is WireMessage
    assert "Envío a:".encode() in data  # no encoding: the text is on the wire
    parts = cast(list[Message], message_from_bytes(data, policy=policy.compat32).get_payload())
    bodies = sum(len(cast(bytes, part.get_payload(decode=True))) for part in parts)
    assert len(data) < 1.1 * bodies  # base64 alone would add a third


def test_a_line_too_long_for_smtp_makes_its_part_base64() -> None:
    # 200 "&" are 1,000 octets once escaped in the HTML: past SMTP's 998 for one line.
    order = Order(ORDER_ID, make_details(product_name="&" * 200), T0)
    data = EmailRenderer("Tienda <ventas@tienda.cl>").render(order, OrderState.ENVIADO, T0).data
    assert encodings(data) == ["8bit", "base64"]
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    parsed = message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert "&amp;" * 200 in part_text(parsed, "html")
    assert "&" * 200 in part_text(parsed, "plain")


def test_a_value_with_a_line_break_gets_crlf_and_its_dot_led_line_is_found() -> None:
    # The domain refuses control characters in an order; the filling must not rely on it.
    skeleton = _Skeleton("Producto: \x1fproduct\x1f\nFin\n")
    part, dot_led = _text_part("plain", skeleton, {"product": "Uno\n.Dos"}, b"--b")
    body = part.split(b"\r\n\r\n", 1)[1]
    assert body == b"Producto: Uno\r\n.Dos\r\nFin\r\n"
    assert dot_led  # smtplib must double that dot


def test_a_part_holding_the_boundary_is_base64() -> None:
    boundary = f"--=_pedidos-{ORDER_ID}-enviado"
    order = Order(ORDER_ID, make_details(product_name=boundary), T0)
    data = EmailRenderer("Tienda <ventas@tienda.cl>").render(order, OrderState.ENVIADO, T0).data
    assert encodings(data) == ["base64", "base64"]
    parsed = message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert boundary in part_text(parsed, "plain")


def test_a_line_starting_with_a_dot_leaves_the_message_to_smtplibs_quoting() -> None:
    # The footer's line starts with the shop's name.
    order = Order(ORDER_ID, make_details(), T0)
    renderer = EmailRenderer(".Tienda <ventas@tienda.cl>")
    data = renderer.render(order, OrderState.ENVIADO, T0).data
    assert b"\r\n.Tienda \xc2\xb7 ventas@tienda.cl\r\n" in data
    assert type(data) is bytes  # not a WireMessage: the mailer searches it and doubles the dot


def test_a_price_is_formatted_once_per_order_while_every_open_order_walks_interleaved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Babel's formatting is the dearest value of an e-mail: a loaded consumer walks up to
    # CONSUMER_MAX_OPEN_ORDERS orders at once, each e-mail of one between two of another's.
    formatted: list[Money] = []
    original = Money.format

    def counted(self: Money, locale: str = "es_CL") -> str:
        formatted.append(self)
        return original(self, locale)

    monkeypatch.setattr(Money, "format", counted)
    open_orders = 2000
    renderer = EmailRenderer("Tienda <ventas@tienda.cl>", open_orders)
    orders = [
        Order(f"{ORDER_ID[:-6]}{n:06d}", make_details(price_minor=1000 + 10 * n), T0)
        for n in range(open_orders)
    ]
    for state in ALL_STATES:
        for order in orders:
            renderer.render(order, state, T0)
    assert len(formatted) == open_orders
