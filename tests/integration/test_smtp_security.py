"""SMTP with STARTTLS + AUTH against a real aiosmtpd server that requires both."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from admin.stack import EmbeddedStack, MailSinkOptions, StackPorts, free_port
from pedidos.adapters.smtp_mailer import SmtpMailer, SmtpSettings, TransientMailError
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.notifications.render import EmailRenderer, OutgoingEmail
from tests.support import Inbox
from tests.unit.factories import make_details

pytestmark = pytest.mark.integration

USER, PASSWORD = "tienda", "correct horse battery staple"  # pragma: allowlist secret


@dataclass
class SecureSink:
    port: int
    ca_file: Path
    maildir: Path


@pytest.fixture(scope="module")
def secure_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureSink]:
    root = tmp_path_factory.mktemp("secure-smtp")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    sink = EmbeddedStack(
        root,
        StackPorts(free_port(), free_port(), free_port()),
        MailSinkOptions(
            tls_cert=root / "server.pem",
            tls_key=root / "server.pem",
            auth_user=USER,
            auth_password=PASSWORD,
        ),
        tied_to_parent=True,
    )
    sink.start("smtp")
    try:
        yield SecureSink(sink.ports.smtp, root / "ca.pem", sink.maildir)
    finally:
        sink.stop("smtp")


def email(state: OrderState = OrderState.PROCESANDO) -> OutgoingEmail:
    order = Order("9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41", make_details(), datetime.now(UTC))
    return EmailRenderer("Tienda <ventas@tienda.cl>").render(order, state, order.accepted_at)


def mailer(sink: SecureSink, **overrides: object) -> SmtpMailer:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": sink.port,
        "user": USER,
        "password": PASSWORD,
        "starttls": True,
        "ca_file": str(sink.ca_file),
        "timeout_s": 5,
        "connections": 1,
    }
    values.update(overrides)
    return SmtpMailer(SmtpSettings(**values))  # type: ignore[arg-type]


def test_starttls_and_login_deliver_and_the_connection_is_reused(secure_sink: SecureSink) -> None:
    smtp = mailer(secure_sink)
    try:
        smtp.send(email(OrderState.PROCESANDO))
        smtp.send(email(OrderState.PREPARACION))
        assert smtp._idle.qsize() == 1  # one connection, logged in once, used twice
    finally:
        smtp.close()
    states = Inbox(secure_sink.maildir).states_by_order(["9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"])
    assert states["9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"][-2:] == ["procesando", "preparacion"]


def test_wrong_credentials_are_a_retryable_error_with_a_clear_message(
    secure_sink: SecureSink,
) -> None:
    smtp = mailer(secure_sink, password="wrong")
    try:
        with pytest.raises(
            TransientMailError, match=r"authentication failed.*SMTP_USER/SMTP_PASSWORD"
        ):
            smtp.send(email())
    finally:
        smtp.close()


def test_the_server_refuses_mail_without_tls(secure_sink: SecureSink) -> None:
    smtp = mailer(secure_sink, starttls=False)
    try:
        with pytest.raises(TransientMailError):
            smtp.send(email())
    finally:
        smtp.close()


def test_an_untrusted_certificate_is_refused(secure_sink: SecureSink) -> None:
    smtp = mailer(secure_sink, ca_file=None)
    try:
        with pytest.raises(TransientMailError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            smtp.send(email())
    finally:
        smtp.close()
