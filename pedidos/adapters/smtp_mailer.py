"""Sends e-mails with smtplib over a small pool of reused, authenticated connections."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import smtplib
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from pedidos.adapters.email.seven_bit import seven_bit
from pedidos.ports import (
    MailOutageError,
    OutgoingEmail,
    PermanentMailError,
    TransientMailError,
    WireMessage,
)
from pedidos.runtime import tracing
from pedidos.runtime.config import Settings

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, SizedBuffer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout_s: float = 10.0
    connections: int = 4
    ca_file: str | None = None


def smtp_settings(settings: Settings) -> SmtpSettings:
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        user=settings.smtp_user,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
        ssl=settings.smtp_ssl,
        timeout_s=settings.smtp_timeout_s,
        connections=settings.smtp_connections,
        ca_file=settings.smtp_ca_file,
    )


SETUP_HINT = "check SMTP_USER/SMTP_PASSWORD, SMTP_STARTTLS/SMTP_SSL and SMTP_FROM"
# Enhanced status X.7.Y is security or policy (authentication, relaying, sender checks).
_POLICY = re.compile(r"^[45]\.7\.\d{1,3}\b")
# Replies about this message's size, whatever the command they came at.
_TOO_BIG = re.compile(r"^5\.(3\.4|2\.3)\b")


def _reply(code: int, text: bytes | str) -> str:
    words = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return f"{code} {words}".strip()


def _about_our_setup(code: int, reply: str) -> bool:
    """Authentication or relay refusals: the sender's setup is wrong, not this message."""
    enhanced = reply.partition(" ")[2]
    return code in (530, 534, 535, 538) or bool(_POLICY.match(enhanced))


def _too_big(code: int, reply: str) -> bool:
    return code == 552 or bool(_TOO_BIG.match(reply.partition(" ")[2]))


def classify(exc: Exception) -> TransientMailError | PermanentMailError:
    """What a failed send means, from smtplib's exception and the server's reply.

    Permanent: this recipient (5xx at RCPT TO) or this message (too big, content refused at DATA).
    Transient: this recipient for now (4xx at RCPT TO). An outage, everything else: the server is
    down or closing (421, other 4xx), or our setup is refused (530/535/X.7.Y authentication and
    relay refusals, sender refused, TLS): every e-mail would fail alike, so none is dead-lettered.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _recipients_refused(exc)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return MailOutageError(
            f"SMTP authentication failed ({_reply(exc.smtp_code, exc.smtp_error)}); "
            "check SMTP_USER/SMTP_PASSWORD"
        )
    if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return _sender_or_data_refused(exc)
    if isinstance(exc, smtplib.SMTPResponseException):
        # Greeting, EHLO, STARTTLS or any other command: the server, not this message.
        return MailOutageError(f"mail server replied {_reply(exc.smtp_code, exc.smtp_error)}")
    if isinstance(exc, ssl.SSLError):
        return MailOutageError(f"TLS failed: {exc}; check SMTP_CA_FILE and SMTP_STARTTLS/SMTP_SSL")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return MailOutageError(f"{str(exc).rstrip('.')}; {SETUP_HINT}")
    return MailOutageError(f"mail server unreachable: {exc.__class__.__name__}: {exc}")


def _recipients_refused(
    exc: smtplib.SMTPRecipientsRefused,
) -> TransientMailError | PermanentMailError:
    replies = [(code, _reply(code, text)) for code, text in exc.recipients.values()]
    said = "; ".join(reply for _, reply in replies)
    if any(code == 421 for code, _ in replies):
        return MailOutageError(f"mail server closing the connection ({said})")
    if any(_about_our_setup(code, reply) for code, reply in replies):
        return MailOutageError(f"the server refused to relay ({said}); {SETUP_HINT}")
    if replies and all(500 <= code < 600 for code, _ in replies):
        return PermanentMailError(f"recipient refused: {said}")
    return TransientMailError(f"recipient deferred: {said}")


def _sender_or_data_refused(
    exc: smtplib.SMTPSenderRefused | smtplib.SMTPDataError,
) -> TransientMailError | PermanentMailError:
    code, reply = exc.smtp_code, _reply(exc.smtp_code, exc.smtp_error)
    if _too_big(code, reply):
        return PermanentMailError(f"message refused as too big: {reply}")
    if code == 530:
        return MailOutageError(f"the server requires authentication or TLS ({reply}); {SETUP_HINT}")
    if code < 500:
        return MailOutageError(f"mail server deferred all mail ({reply})")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return MailOutageError(f"the server refused the sender ({reply}); {SETUP_HINT}")
    if _about_our_setup(code, reply):
        return MailOutageError(f"the server refused our mail by policy ({reply}); {SETUP_HINT}")
    return PermanentMailError(f"message refused: {reply}")


def _data(client: smtplib.SMTP, msg: ReadableBuffer | str) -> tuple[int, bytes]:
    """smtplib's DATA without its regex over the whole message when no line starts with a dot.

    `SMTP.data` runs `_quote_periods` (a multiline regex) over every message: a third of a
    send's CPU for our ~19 KB e-mails, whose base64 bodies and headers never start a line with
    ".". A C substring search proves that per message; anything else goes through smtplib.
    """
    if not _plain(msg):
        return smtplib.SMTP.data(client, msg)
    assert isinstance(msg, bytes)
    client.putcmd("data")
    code, reply = client.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    return _send_message(client, msg)


def _send_message(client: smtplib.SMTP, msg: bytes) -> tuple[int, bytes]:
    """After the server's 354: what smtplib sends after quoting (the message, CRLF if it lacks
    one, then "."), and the server's reply."""
    client.send(msg + (b".\r\n" if msg.endswith(b"\r\n") else b"\r\n.\r\n"))
    return client.getreply()


def _plain(msg: object) -> bool:
    """Bytes that smtplib's DATA would send unchanged (no line starts with a dot)."""
    if type(msg) is WireMessage:
        return True
    return isinstance(msg, bytes) and not msg.startswith(b".") and b"\n." not in msg


@lru_cache(maxsize=4096)
def _quoted(address: str) -> str:
    """smtplib.quoteaddr (an RFC 822 parse, ~6 µs) once per address: one sender, and an
    order's five e-mails to one customer."""
    return smtplib.quoteaddr(address)


def _refused(client: smtplib.SMTP, code: int) -> None:
    # As smtplib's sendmail leaves a connection after a refusal: closed on 421, else reset.
    if code == 421:
        client.close()
    else:
        with contextlib.suppress(smtplib.SMTPServerDisconnected):
            client.rset()


class SmtpConnection(smtplib.SMTP):
    """smtplib's client with the DATA shortcut above and pipelined commands (also the bench's
    raw send)."""

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        return _data(self, msg)

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: SizedBuffer | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """smtplib's sendmail, with MAIL, RCPT and DATA in one write when the server offers
        PIPELINING (RFC 2920): one round trip before the message instead of three, the step's
        largest cost after the message itself. The replies are read in order, and a refusal raises
        what smtplib's sendmail raises, leaving the connection as it does, so failures are
        classified alike. Several recipients, options, text or dot-led lines go through smtplib."""
        self.ehlo_or_helo_if_needed()
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        if (
            not self.has_extn("pipelining")
            or rcpt_options
            or len(recipients) != 1
            or not _plain(msg)
        ):
            return super().sendmail(from_addr, to_addrs, msg, mail_options, rcpt_options)
        assert isinstance(msg, bytes)
        (to_addr,) = recipients
        # As smtplib's sendmail: SIZE first, then the caller's options.
        options = [f"size={len(msg)}"] if self.has_extn("size") else []
        options += mail_options
        command = " ".join((f"mail FROM:{_quoted(from_addr)}", *options))
        self.send(f"{command}\r\nrcpt TO:{_quoted(to_addr)}\r\ndata\r\n")
        mail, rcpt, data = self.getreply(), self.getreply(), self.getreply()
        if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
            self.send(b".\r\n")  # a server that took DATA anyway: end the empty message
            self.getreply()
        if mail[0] != 250:
            _refused(self, mail[0])
            raise smtplib.SMTPSenderRefused(mail[0], mail[1], from_addr)
        if rcpt[0] not in (250, 251):
            _refused(self, rcpt[0])
            raise smtplib.SMTPRecipientsRefused({to_addr: rcpt})
        if data[0] != 354:
            _refused(self, data[0])
            raise smtplib.SMTPDataError(*data)
        code, reply = _send_message(self, msg)
        if code != 250:
            _refused(self, code)
            raise smtplib.SMTPDataError(code, reply)
        return {}


def send_to(client: smtplib.SMTP, message: OutgoingEmail) -> None:
    """Sends `message` on `client`. Bytes beyond ASCII (8bit parts) are declared with
    BODY=8BITMIME to a server that offers it; for one that does not, the message is converted
    (its 8bit parts base64), as RFC 6152 requires."""
    data = message.data
    options: tuple[str, ...] = ()
    if not data.isascii():
        client.ehlo_or_helo_if_needed()
        if client.has_extn("8bitmime"):
            options = ("BODY=8BITMIME",)
        else:
            data = seven_bit(data)
    client.sendmail(message.sender, [message.recipient], data, options)


class SmtpSslConnection(SmtpConnection, smtplib.SMTP_SSL):
    """The same over implicit TLS (SMTP_SSL's socket, SmtpConnection's sending)."""


# A send waiting for a sender thread: the message, the loop to answer on, the answer, and the
# trace context to send it in (None when tracing is off). Threads do not inherit contextvars,
# so the sender thread attaches the step's context itself.
_Job = tuple[OutgoingEmail, asyncio.AbstractEventLoop, "asyncio.Future[None]", Context | None]


def _settle(done: asyncio.Future[None], failure: Exception | None) -> None:
    """On the loop: the sender thread's answer (nobody waits any more if it was cancelled)."""
    if done.cancelled():
        return
    if failure is None:
        done.set_result(None)
    else:
        done.set_exception(failure)


class SmtpMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._idle: queue.LifoQueue[smtplib.SMTP] = queue.LifoQueue()
        # One sender thread per pooled connection, fed by a queue: send_async costs one put and
        # one call_soon_threadsafe, not an executor's work item, concurrent future and chaining.
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._senders: list[threading.Thread] = []
        self._senders_lock = threading.Lock()

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self._settings.ca_file)

    def _connect(self) -> smtplib.SMTP:
        s = self._settings
        client: smtplib.SMTP
        if s.ssl:
            client = SmtpSslConnection(
                s.host, s.port, timeout=s.timeout_s, context=self._tls_context()
            )
        else:
            client = SmtpConnection(s.host, s.port, timeout=s.timeout_s)
        try:
            client.ehlo()
            if s.starttls:
                client.starttls(context=self._tls_context())
                client.ehlo()
            if s.user and s.password:
                client.login(s.user, s.password)
        except Exception:
            client.close()
            raise
        return client

    def send(self, message: OutgoingEmail) -> None:
        """Blocking send on a pooled connection; raises what `classify` makes of a failure."""
        try:
            client = self._idle.get_nowait()
            reused = True
        except queue.Empty:
            client, reused = None, False
        try:
            if client is None:
                client = self._connect()
            try:
                send_to(client, message)
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # An idle connection the server closed: one fresh attempt, not an error.
                client.close()
                client = self._connect()
                send_to(client, message)
        except (smtplib.SMTPException, OSError) as exc:
            if client is not None and not isinstance(exc, smtplib.SMTPResponseException):
                client.close()
                client = None
            if client is not None:
                # The connection is fine after a refused message; reset the transaction.
                try:
                    client.rset()
                except (smtplib.SMTPException, OSError):
                    client.close()
                    client = None
            raise classify(exc) from exc
        finally:
            if client is not None:
                self._idle.put(client)

    async def send_async(self, message: OutgoingEmail) -> None:
        """`send` on a sender thread; the loop is free meanwhile."""
        if not self._senders:
            self._start_senders()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        parent = otel_context.get_current() if tracing.enabled() else None
        self._jobs.put((message, loop, done, parent))
        await done

    def _start_senders(self) -> None:
        with self._senders_lock:
            while len(self._senders) < self._settings.connections:
                # Daemon: an exit without close() must not hang on an idle thread; close()
                # joins them, so an orderly stop finishes every send it accepted.
                sender = threading.Thread(
                    target=self._sender, name=f"smtp-{len(self._senders)}", daemon=True
                )
                sender.start()
                self._senders.append(sender)

    def _sender(self) -> None:
        while (job := self._jobs.get()) is not None:
            message, loop, done, parent = job
            if done.cancelled():
                continue  # as an executor drops a cancelled call that has not started
            failure: Exception | None = None
            try:
                if parent is None:
                    self.send(message)
                else:
                    self._traced_send(message, parent)
            except Exception as exc:  # handed to the awaiting task, raised there
                failure = exc
            # RuntimeError: the loop is closed, nobody awaits this send any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, done, failure)

    def _traced_send(self, message: OutgoingEmail, parent: Context) -> None:
        """`send` in an `smtp send` CLIENT span, a child of the step that asked for it."""
        attributes: dict[str, str | int] = {
            "server.address": self._settings.host,
            "server.port": self._settings.port,
            "pedidos.email.message_id": message.message_id,
        }
        with tracing.tracer().start_as_current_span(
            "smtp send", context=parent, kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                self.send(message)
            except Exception as exc:
                # What the failure means to us (outage, transient, permanent), low-cardinality.
                span.set_attribute("error.type", type(exc).__name__)
                raise

    def close(self) -> None:
        """Finishes the sends already queued, then quits the idle connections."""
        with self._senders_lock:
            senders, self._senders = self._senders, []
            for _ in senders:
                self._jobs.put(None)
        for sender in senders:
            sender.join()
        while True:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                return
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
