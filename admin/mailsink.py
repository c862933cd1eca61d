"""A real SMTP server (aiosmtpd) that stores every message it accepts in a Maildir.

It is the embedded stack's inbox: tests and users read what the consumer sent from the Maildir.
Options let tests reject chosen recipients with 550, defer commands with 4xx replies, require
STARTTLS (or implicit TLS) + AUTH, or discard mail.
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import os
import re
import signal
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from pedidos.runtime.event_loop import event_loop_factory

_DEFER_TEXT = {
    421: "421 4.3.2 Service not available, closing transmission channel",
    451: "451 4.3.0 Local error in processing, try again later",
}
STAGES = ("mail", "rcpt", "data")


@dataclass
class Deferral:
    """Answer the next `count` commands at `stage` (mail, rcpt, data) with a 4xx `code`."""

    stage: str
    code: int
    count: int

    @classmethod
    def parse(cls, spec: str) -> Deferral:
        """'data:451:3' → defer the next 3 DATA commands with 451."""
        parts = spec.split(":")
        if (
            len(parts) != 3
            or parts[0] not in STAGES
            or not all(part.isdigit() for part in parts[1:])
            or not 400 <= int(parts[1]) < 500
        ):
            raise argparse.ArgumentTypeError(
                f"{spec!r}: expected STAGE:CODE:COUNT with STAGE in {'/'.join(STAGES)} and a "
                "4xx CODE, e.g. data:451:3"
            )
        return cls(parts[0], int(parts[1]), int(parts[2]))

    @property
    def reply(self) -> str:
        return _DEFER_TEXT.get(self.code, f"{self.code} 4.3.0 Try again later")


class MaildirHandler:
    def __init__(
        self,
        maildir: Path | None,
        reject: re.Pattern[str] | None,
        deferrals: list[Deferral] | None = None,
        pipelining: bool = True,
        eight_bit_mime: bool = True,
    ) -> None:
        self._box = mailbox.Maildir(maildir, create=True) if maildir else None
        self._pipelining = pipelining
        self._eight_bit_mime = eight_bit_mime
        self._reject = reject
        self._deferrals = deferrals if deferrals is not None else []
        self._lock = threading.Lock()
        # MAIL's parameters of the last messages accepted (BODY=8BITMIME, SIZE=…), for tests.
        self.mail_options: deque[list[str]] = deque(maxlen=1000)

    def _deferred(self, stage: str) -> str | None:
        for deferral in self._deferrals:
            if deferral.stage == stage and deferral.count > 0:
                deferral.count -= 1
                # The client's log may fold a deferral into an outage it already reported;
                # this line is what says the deferral was really made.
                print(f"deferred {stage.upper()}: {deferral.reply}", flush=True)
                return deferral.reply
        return None

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Offers PIPELINING (RFC 2920) as real relays do: aiosmtpd reads commands one line at a
        time, so commands sent together are answered in order. Without `eight_bit_mime` it is
        a server that takes 7-bit mail only (aiosmtpd always offers 8BITMIME)."""
        session.host_name = hostname
        if self._pipelining:
            responses.insert(-1, "250-PIPELINING")
        if not self._eight_bit_mime:
            responses = [line for line in responses if line != "250-8BITMIME"]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := self._deferred("mail"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := self._deferred("rcpt"):
            return reply
        if self._reject and self._reject.search(address):
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if reply := self._deferred("data"):
            return reply
        if self._box is not None:
            content = envelope.original_content or envelope.content
            assert isinstance(content, bytes)
            with self._lock:
                self._box.add(content)
        self.mail_options.append(list(envelope.mail_options))
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
    defer: list[Deferral] | None = None,
    implicit_tls: bool = False,
    pipelining: bool = True,
    eight_bit_mime: bool = True,
) -> Controller:
    """The server, on its own thread and event loop: uvloop's without TLS (the consumer's
    e-mails cost it 0.57 ms of CPU each there, 0.64 on asyncio's loop; aiosmtpd's STARTTLS
    drives asyncio's own TLS protocol, so a TLS sink keeps asyncio's loop)."""
    handler = MaildirHandler(
        maildir, re.compile(reject) if reject else None, defer, pipelining, eight_bit_mime
    )
    kwargs: dict[str, Any] = {"data_size_limit": 10 * 1024 * 1024}
    tls = False
    if tls_cert and tls_key:
        tls = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert, tls_key)
        if implicit_tls:
            # Port-465 style: TLS from the first byte, no STARTTLS.
            kwargs.update(ssl_context=context)
        else:
            kwargs.update(tls_context=context, require_starttls=True)
    if auth_user and auth_password:
        kwargs.update(
            authenticator=_Authenticator(auth_user, auth_password),
            auth_required=True,
            # Under implicit TLS aiosmtpd sees no STARTTLS layer; the whole session is TLS.
            auth_require_tls=tls and not implicit_tls,
        )
    factory = None if tls else event_loop_factory()
    loop: asyncio.AbstractEventLoop | None = None if factory is None else factory()
    return Controller(handler, hostname=host, port=port, loop=loop, **kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m admin mailsink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--maildir", type=Path, help="where to store mail (omit to discard)")
    parser.add_argument("--reject", help="regex: recipients matching it get 550")
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument(
        "--implicit-tls", action="store_true", help="TLS from connect (SMTP_SSL), not STARTTLS"
    )
    parser.add_argument(
        "--defer",
        type=Deferral.parse,
        action="append",
        default=[],
        metavar="STAGE:CODE:COUNT",
        help="answer the next COUNT commands at STAGE (mail, rcpt, data) with a 4xx CODE; "
        "repeatable, e.g. --defer mail:421:2 --defer data:451:3",
    )
    args = parser.parse_args(argv)
    if args.implicit_tls and not (args.tls_cert and args.tls_key):
        parser.error("--implicit-tls needs --tls-cert and --tls-key")
    controller = build_controller(
        host=args.host,
        port=args.port,
        maildir=args.maildir,
        reject=args.reject,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        defer=args.defer,
        implicit_tls=args.implicit_tls,
        # Credentials only ever come from the environment.
        auth_user=os.environ.get("MAILSINK_AUTH_USER"),
        auth_password=os.environ.get("MAILSINK_AUTH_PASSWORD"),
    )
    controller.start()
    stop = threading.Event()
    stopped_by: list[str] = []

    def on_signal(number: int, _: object) -> None:
        stopped_by.append(signal.Signals(number).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(
        f"mailsink listening on {args.host}:{args.port} → {args.maildir or 'discard'}", flush=True
    )
    stop.wait()
    # Which stop it was, in the log: a sink that vanished without this line was killed.
    print(f"mailsink stopping on {stopped_by[0]}", flush=True)
    controller.stop()


if __name__ == "__main__":
    main()
