"""A real SMTP server (aiosmtpd) that stores every message it accepts in a Maildir.

It is the embedded stack's inbox: tests and users read what the consumer sent from the Maildir.
Options let tests reject chosen recipients with 550, require STARTTLS + AUTH, or discard mail.
"""

from __future__ import annotations

import argparse
import mailbox
import os
import re
import signal
import ssl
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class MaildirHandler:
    def __init__(self, maildir: Path | None, reject: re.Pattern[str] | None) -> None:
        self._box = mailbox.Maildir(maildir, create=True) if maildir else None
        self._reject = reject
        self._lock = threading.Lock()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self._reject and self._reject.search(address):
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._box is not None:
            content = envelope.original_content or envelope.content
            assert isinstance(content, bytes)
            with self._lock:
                self._box.add(content)
        return "250 2.0.0 Message accepted"


class _Authenticator:
    def __init__(self, user: str, password: str) -> None:
        self._user, self._password = user.encode(), password.encode()

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == self._user
            and data.password == self._password
        )
        return AuthResult(success=ok, handled=False)


def build_controller(
    *,
    host: str,
    port: int,
    maildir: Path | None,
    reject: str | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    auth_user: str | None = None,
    auth_password: str | None = None,
) -> Controller:
    handler = MaildirHandler(maildir, re.compile(reject) if reject else None)
    kwargs: dict[str, Any] = {"data_size_limit": 10 * 1024 * 1024}
    if tls_cert and tls_key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert, tls_key)
        kwargs.update(tls_context=context, require_starttls=True)
    if auth_user and auth_password:
        kwargs.update(
            authenticator=_Authenticator(auth_user, auth_password),
            auth_required=True,
            auth_require_tls=bool(tls_cert),
        )
    return Controller(handler, hostname=host, port=port, **kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m admin mailsink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--maildir", type=Path, help="where to store mail (omit to discard)")
    parser.add_argument("--reject", help="regex: recipients matching it get 550")
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    args = parser.parse_args(argv)
    controller = build_controller(
        host=args.host,
        port=args.port,
        maildir=args.maildir,
        reject=args.reject,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        # Credentials only ever come from the environment.
        auth_user=os.environ.get("MAILSINK_AUTH_USER"),
        auth_password=os.environ.get("MAILSINK_AUTH_PASSWORD"),
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(
        f"mailsink listening on {args.host}:{args.port} → {args.maildir or 'discard'}", flush=True
    )
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
