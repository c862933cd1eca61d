"""What each SMTP failure means: this message or recipient, this recipient for now, or an outage.

The exceptions are smtplib's own, built as smtplib raises them; the real servers are exercised in
tests/integration/test_smtp_security.py and tests/e2e/test_mail_misconfiguration.py.
"""

from __future__ import annotations

import re
import smtplib
import ssl

import pytest

from pedidos.adapters.smtp_mailer import (
    MailOutageError,
    PermanentMailError,
    TransientMailError,
    classify,
)

SENDER = "ventas@tienda.cl"
RECIPIENT = "cliente@example.cl"


def rcpt(code: int, text: bytes) -> smtplib.SMTPRecipientsRefused:
    return smtplib.SMTPRecipientsRefused({RECIPIENT: (code, text)})


CASES: list[tuple[str, Exception, type[Exception], str]] = [
    # This recipient or this message: dead-lettered with the reason.
    ("unknown mailbox", rcpt(550, b"5.1.1 Mailbox unavailable"), PermanentMailError, "550 5.1.1"),
    ("bad address", rcpt(553, b"5.1.3 Bad recipient address syntax"), PermanentMailError, "553"),
    ("mailbox full", rcpt(552, b"5.2.2 Mailbox full"), PermanentMailError, "552 5.2.2"),
    (
        "too big at DATA",
        smtplib.SMTPDataError(552, b"5.3.4 Message too big for system"),
        PermanentMailError,
        "too big: 552",
    ),
    (
        "too big at MAIL FROM (SIZE)",
        smtplib.SMTPSenderRefused(552, b"5.3.4 Message size exceeds fixed limit", SENDER),
        PermanentMailError,
        "too big",
    ),
    (
        "content refused",
        smtplib.SMTPDataError(554, b"5.6.0 Message content rejected"),
        PermanentMailError,
        "554 5.6.0",
    ),
    # This recipient, for now: retried, no outage.
    ("greylisted", rcpt(450, b"4.2.0 Greylisted, try later"), TransientMailError, "deferred: 450"),
    ("recipient 451", rcpt(451, b"4.3.0 Try again later"), TransientMailError, "deferred: 451"),
    # The server or our setup: an outage, never dead-lettered.
    (
        "no credentials against AUTH",
        smtplib.SMTPSenderRefused(530, b"5.7.0 Authentication required", SENDER),
        MailOutageError,
        r"requires authentication.*530 5\.7\.0.*SMTP_USER/SMTP_PASSWORD",
    ),
    (
        "STARTTLS required",
        smtplib.SMTPSenderRefused(530, b"Must issue a STARTTLS command first", SENDER),
        MailOutageError,
        "SMTP_STARTTLS",
    ),
    (
        "wrong credentials",
        smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid"),
        MailOutageError,
        r"authentication failed \(535.*SMTP_USER/SMTP_PASSWORD",
    ),
    (
        "relay denied at RCPT",
        rcpt(550, b"5.7.1 Relaying denied"),
        MailOutageError,
        r"refused to relay \(550 5\.7\.1",
    ),
    ("auth required at RCPT", rcpt(530, b"5.7.0 Authentication required"), MailOutageError, "530"),
    (
        "sender not allowed",
        smtplib.SMTPSenderRefused(553, b"5.1.8 Sender address rejected", SENDER),
        MailOutageError,
        "refused the sender.*SMTP_FROM",
    ),
    (
        "DMARC refusal at DATA",
        smtplib.SMTPDataError(550, b"5.7.26 Unauthenticated email is not accepted"),
        MailOutageError,
        "by policy",
    ),
    (
        "421 at MAIL FROM",
        smtplib.SMTPSenderRefused(421, b"4.3.2 Service shutting down", SENDER),
        MailOutageError,
        "deferred all mail.*421",
    ),
    ("421 at RCPT", rcpt(421, b"4.3.2 Service shutting down"), MailOutageError, "closing"),
    (
        "451 at DATA",
        smtplib.SMTPDataError(451, b"4.3.0 Local error in processing"),
        MailOutageError,
        "451",
    ),
    (
        "452 at MAIL FROM",
        smtplib.SMTPSenderRefused(452, b"4.3.1 Insufficient system storage", SENDER),
        MailOutageError,
        "452",
    ),
    (
        "421 greeting",
        smtplib.SMTPConnectError(421, b"4.3.2 Too many connections"),
        MailOutageError,
        "replied 421",
    ),
    ("EHLO refused", smtplib.SMTPHeloError(501, b"Syntax error"), MailOutageError, "replied 501"),
    (
        "STARTTLS refused",
        smtplib.SMTPResponseException(454, b"4.7.0 TLS not available"),
        MailOutageError,
        "replied 454",
    ),
    (
        "no AUTH offered",
        smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server."),
        MailOutageError,
        "AUTH extension not supported by server; check",
    ),
    (
        "untrusted certificate",
        ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify"),
        MailOutageError,
        "TLS failed.*CERTIFICATE_VERIFY_FAILED.*SMTP_CA_FILE",
    ),
    ("server down", ConnectionRefusedError(111, "Connection refused"), MailOutageError, "refused"),
    ("timeout", TimeoutError("timed out"), MailOutageError, "unreachable: TimeoutError"),
    (
        "dropped",
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
        MailOutageError,
        "unreachable: SMTPServerDisconnected",
    ),
]


@pytest.mark.parametrize(
    ("exc", "expected", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_failure_is_classified_with_a_reason(
    exc: Exception, expected: type[Exception], says: str
) -> None:
    result = classify(exc)
    # Exact type: an outage is also a TransientMailError, and must not pass for a deferral.
    assert type(result) is expected
    assert re.search(says, str(result)), str(result)


def test_only_outages_stop_the_whole_intake() -> None:
    # The workflow retries every TransientMailError; it pauses intake only for outages.
    assert issubclass(MailOutageError, TransientMailError)
    assert not issubclass(PermanentMailError, TransientMailError)
