"""A batch of e-mails pipelined across messages (RFC 2920) against a real aiosmtpd server, and
one by one to a server without PIPELINING: each e-mail's outcome in order, every accepted one
delivered once, the refused and deferred ones not, and after the server closes the connection
the rest sent on a new one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from admin.mailsink import Deferral
from devkit.inbox import Inbox
from devkit.orders import make_details
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.smtp_mailer import SmtpMailer, SmtpSettings
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.ports import MailOutageError, OutgoingEmail, PermanentMailError
from tests.integration.smtp_sinks import REFUSED, DeferringSink

pytestmark = pytest.mark.integration


def order_email(recipient: str) -> tuple[str, OutgoingEmail]:
    order = Order(str(uuid.uuid4()), make_details(customer_email=recipient), datetime.now(UTC))
    renderer = EmailRenderer("Tienda <ventas@tienda.cl>")
    return order.order_id, renderer.render(order, OrderState.PROCESANDO, order.accepted_at)


def send_batch(port: int, recipients: list[str]) -> tuple[list[str], list[Exception | None]]:
    emails = [order_email(recipient) for recipient in recipients]
    mailer = SmtpMailer(SmtpSettings("127.0.0.1", port, timeout_s=5, connections=1))
    try:
        outcomes = mailer.send_all([email for _, email in emails])
    finally:
        mailer.close()
    return [order_id for order_id, _ in emails], outcomes


def test_each_e_mail_of_a_batch_has_its_own_outcome_and_each_accepted_one_arrives_once(
    deferring_sink: DeferringSink,
) -> None:
    port, maildir, deferrals = deferring_sink.port, deferring_sink.maildir, deferring_sink.deferrals
    # The first message's content is deferred (aiosmtpd answers DATA's content with the
    # handler's reply), the fourth's recipient refused; the others go through.
    deferrals.append(Deferral.parse("data:451:1"))
    recipients = [f"c{n}@example.cl" for n in range(8)]
    recipients[3] = REFUSED
    order_ids, outcomes = send_batch(port, recipients)
    assert isinstance(outcomes[0], MailOutageError)
    assert "451" in str(outcomes[0])
    assert isinstance(outcomes[3], PermanentMailError)
    assert "recipient refused: 550" in str(outcomes[3])
    assert [n for n, outcome in enumerate(outcomes) if outcome is None] == [1, 2, 4, 5, 6, 7]
    delivered = Inbox(maildir).states_by_order(order_ids)
    assert delivered == {order_ids[n]: ["procesando"] for n in (1, 2, 4, 5, 6, 7)}


def test_after_the_server_closes_the_connection_the_rest_go_on_a_new_one(
    deferring_sink: DeferringSink,
) -> None:
    port, maildir, deferrals = deferring_sink.port, deferring_sink.maildir, deferring_sink.deferrals
    deferrals.append(Deferral.parse("mail:421:1"))  # the first MAIL: 421, closing
    order_ids, outcomes = send_batch(port, [f"c{n}@example.cl" for n in range(6)])
    assert isinstance(outcomes[0], MailOutageError)
    assert "421" in str(outcomes[0])
    assert outcomes[1:] == [None] * 5
    delivered = Inbox(maildir).states_by_order(order_ids)
    assert delivered == {order_id: ["procesando"] for order_id in order_ids[1:]}
