"""SMTP with STARTTLS or implicit TLS + AUTH against real aiosmtpd servers that require them,
and what each failure is classified as (an outage to retry, or this message refused)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from admin.mailsink import Deferral, build_controller
from devkit.inbox import Inbox
from devkit.net import free_port
from devkit.orders import make_details
from devkit.stack import EmbeddedStack, MailSinkOptions, StackPorts
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.smtp_mailer import (
    MailOutageError,
    SmtpConnection,
    SmtpMailer,
    SmtpSettings,
    TransientMailError,
)
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.ports import OutgoingEmail
from tests.integration.smtp_sinks import DeferringSink

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


def test_warm_up_logs_in_ahead_and_the_first_email_goes_on_that_connection(
    secure_sink: SecureSink,
) -> None:
    smtp = mailer(secure_sink)
    try:
        smtp.warm_up()
        (warmed,) = smtp._idle.queue
        assert isinstance(warmed.sock, ssl.SSLSocket)  # STARTTLS done; AUTH next, or it raised
        smtp.send(email())
        assert smtp._idle.queue == [warmed]
    finally:
        smtp.close()


def test_warm_up_names_wrong_credentials_as_the_first_send_would(
    secure_sink: SecureSink,
) -> None:
    smtp = mailer(secure_sink, password="wrong")
    try:
        with pytest.raises(
            MailOutageError, match=r"authentication failed.*SMTP_USER/SMTP_PASSWORD"
        ):
            smtp.warm_up()
        assert smtp._idle.qsize() == 0
    finally:
        smtp.close()


def test_a_missing_ca_file_is_named_with_its_setting(
    secure_sink: SecureSink, tmp_path: Path
) -> None:
    missing = tmp_path / "ca.pem"
    smtp = mailer(secure_sink, ca_file=str(missing))
    try:
        with pytest.raises(
            MailOutageError, match=rf"cannot read {missing}: No such file .*; check SMTP_CA_FILE"
        ):
            smtp.warm_up()
    finally:
        smtp.close()


def test_warm_up_names_a_relay_that_is_down() -> None:
    smtp = SmtpMailer(SmtpSettings("127.0.0.1", free_port(), timeout_s=5, connections=1))
    try:
        with pytest.raises(MailOutageError, match=r"mail server unreachable: ConnectionRefused"):
            smtp.warm_up()
    finally:
        smtp.close()


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
        # The server hides AUTH until STARTTLS; a sink that is down would say "unreachable".
        with pytest.raises(
            MailOutageError, match=r"AUTH extension not supported by server; check .*SMTP_STARTTLS"
        ):
            smtp.send(email())
    finally:
        smtp.close()


def test_no_credentials_against_a_server_requiring_auth_is_an_outage(
    secure_sink: SecureSink,
) -> None:
    smtp = mailer(secure_sink, user=None, password=None)
    try:
        # 530 at MAIL FROM: our setup, not this message; it must never be dead-lettered.
        with pytest.raises(
            MailOutageError, match=r"requires authentication.*530 5\.7\.0.*SMTP_USER/SMTP_PASSWORD"
        ):
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


@dataclass
class InProcessSink:
    port: int
    maildir: Path
    ca_file: Path


@pytest.fixture(scope="module")
def implicit_tls_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSink]:
    # In process: the stack's readiness probe speaks plain SMTP, which a port-465 server is not.
    root = tmp_path_factory.mktemp("implicit-tls")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(root / "server.pem")
    )
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    controller = build_controller(
        host="127.0.0.1",
        port=free_port(),
        maildir=root / "mail",
        tls_cert=root / "server.pem",
        tls_key=root / "server.pem",
        auth_user=USER,
        auth_password=PASSWORD,
        implicit_tls=True,
    )
    controller.start()
    try:
        yield InProcessSink(controller.port, root / "mail", root / "ca.pem")
    finally:
        controller.stop()


def implicit_tls_mailer(sink: InProcessSink, **overrides: object) -> SmtpMailer:
    values: dict[str, object] = {"starttls": False, "ssl": True, **overrides}
    return mailer(SecureSink(sink.port, sink.ca_file, sink.maildir), **values)


# aiosmtpd sees no STARTTLS layer under implicit TLS and warns that AUTH is not under TLS; it is.
implicit_tls_auth = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@implicit_tls_auth
def test_implicit_tls_and_login_deliver_and_the_connection_is_reused(
    implicit_tls_sink: InProcessSink,
) -> None:
    order_id = "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"
    smtp = implicit_tls_mailer(implicit_tls_sink)
    try:
        smtp.send(email(OrderState.ENVIADO))
        smtp.send(email(OrderState.ENTREGADO))
        assert smtp._idle.qsize() == 1
    finally:
        smtp.close()
    states = Inbox(implicit_tls_sink.maildir).states_by_order([order_id])
    assert states[order_id] == ["enviado", "entregado"]


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"ca_file": None}, r"TLS failed.*CERTIFICATE_VERIFY_FAILED.*SMTP_CA_FILE"),
        ({"user": None, "password": None}, r"requires authentication.*530"),
        ({"password": "wrong"}, r"authentication failed \(535"),  # pragma: allowlist secret
        # Plain SMTP against a TLS port: the server waits for a handshake that never comes.
        ({"ssl": False, "timeout_s": 1}, r"unreachable: (TimeoutError|SMTPServerDisconnected)"),
    ],
    ids=["untrusted-certificate", "no-credentials", "wrong-password", "plain-to-tls-port"],
)
@implicit_tls_auth
def test_implicit_tls_setup_errors_are_outages(
    implicit_tls_sink: InProcessSink, overrides: dict[str, object], says: str
) -> None:
    smtp = implicit_tls_mailer(implicit_tls_sink, **overrides)
    try:
        with pytest.raises(MailOutageError, match=says):
            smtp.send(email())
    finally:
        smtp.close()


@pytest.mark.parametrize(
    ("spec", "kind", "says"),
    [
        ("mail:421:1", MailOutageError, r"deferred all mail \(421 4\.3\.2"),
        ("rcpt:421:1", MailOutageError, r"closing the connection \(421 4\.3\.2"),
        ("data:451:1", MailOutageError, r"deferred all mail \(451 4\.3\.0"),
        ("mail:451:1", MailOutageError, r"deferred all mail \(451"),
        # A 4xx for this one recipient is retried without calling it an outage.
        ("rcpt:451:1", TransientMailError, r"recipient deferred: 451"),
    ],
)
def test_4xx_replies_are_retryable_and_the_retry_delivers_once(
    deferring_sink: DeferringSink,
    spec: str,
    kind: type[Exception],
    says: str,
) -> None:
    sink = deferring_sink
    sink.deferrals.append(Deferral.parse(spec))
    smtp = SmtpMailer(SmtpSettings("127.0.0.1", sink.port, timeout_s=5, connections=1))
    try:
        with pytest.raises(kind, match=says) as refused:
            smtp.send(email())
        assert type(refused.value) is kind
        smtp.send(email())  # what the workflow's retry does
    finally:
        smtp.close()
    order_id = "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"
    assert Inbox(sink.maildir).states_by_order([order_id]) == {order_id: ["procesando"]}


class CountingSmtp(SmtpConnection):
    """Counts the writes after EHLO: each is one round trip's request."""

    writes = 0

    def send(self, s: object) -> None:
        self.writes += 1
        super().send(s)  # type: ignore[arg-type]


@pytest.mark.parametrize(("pipelining", "writes"), [(True, 2), (False, 4)])
def test_commands_go_together_only_to_a_server_offering_pipelining(
    tmp_path: Path, pipelining: bool, writes: int
) -> None:
    controller = build_controller(
        host="127.0.0.1", port=free_port(), maildir=tmp_path / "mail", pipelining=pipelining
    )
    controller.start()
    try:
        client = CountingSmtp("127.0.0.1", controller.port, timeout=5)
        client.ehlo()
        assert client.has_extn("pipelining") is pipelining
        client.writes = 0
        message = email()
        assert client.sendmail(message.sender, [message.recipient], message.data) == {}
        assert client.writes == writes  # MAIL+RCPT+DATA, message; or each on its own
        client.quit()
    finally:
        controller.stop()
    order_id = "9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41"
    assert Inbox(tmp_path / "mail").states_by_order([order_id]) == {order_id: ["procesando"]}
