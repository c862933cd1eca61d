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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

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
from pedidos.runtime.event_loop import BoundLoop
from pedidos.runtime.hand_over import answer_from_thread

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
    if isinstance(exc, OSError) and exc.filename is not None:
        # Sockets name no file: this is the CA bundle (`_tls_context`), read as TLS starts.
        return MailOutageError(f"cannot read {exc.filename}: {exc.strerror}; check SMTP_CA_FILE")
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
    """After the server's 354: the message as DATA ends it, and the server's reply."""
    client.send(_terminated(msg))
    return client.getreply()


def _terminated(msg: bytes) -> bytes:
    """What smtplib sends after quoting: the message, CRLF if it lacks one, then "."."""
    return msg + (b".\r\n" if msg.endswith(b"\r\n") else b"\r\n.\r\n")


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


def _ignore(n: int, outcome: Exception | None) -> None:
    pass


class _Outcomes(list[Exception | None]):
    """A batch's outcomes so far; `tell` passes each on once it can no longer change."""

    def __init__(self, final: Callable[[int, Exception | None], None]) -> None:
        super().__init__()
        self._final = final
        self._told = 0

    def tell(self, *, last_pending: bool = False) -> None:
        """Passes on the outcomes not told yet, but the last one while its reply is pending."""
        final = len(self) - 1 if last_pending else len(self)
        while self._told < final:
            self._final(self._told, self[self._told])
            self._told += 1


def _failed(
    outcomes: list[Exception | None], exc: Exception, *, unanswered: bool, in_flight: bool
) -> None:
    """`exc` as the outcome of the last e-mail if its content went unanswered, and of the one
    in flight, whose outcome is not in `outcomes` yet."""
    if unanswered:
        outcomes[-1] = exc
    if in_flight:
        outcomes.append(exc)


# One mail transaction: sender, recipient, the bytes DATA sends, MAIL's options.
Transaction = tuple[str, str, bytes, Sequence[str]]


class SmtpConnection(smtplib.SMTP):
    """smtplib's client with the DATA shortcut above and pipelined commands (also the bench's
    raw send)."""

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        return _data(self, msg)

    def _pipelines(self, msg: object, recipients: int, rcpt_options: Sequence[str] = ()) -> bool:
        return self.has_extn("pipelining") and not rcpt_options and recipients == 1 and _plain(msg)

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: SizedBuffer | str,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """smtplib's sendmail, with MAIL, RCPT and DATA in one write when the server offers
        PIPELINING (RFC 2920): one round trip before the message instead of three. A refusal
        raises what smtplib's sendmail raises, leaving the connection as it does, so failures
        are classified alike. Several recipients, options, text or dot-led lines go through
        smtplib."""
        self.ehlo_or_helo_if_needed()
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        if not self._pipelines(msg, len(recipients), rcpt_options):
            return super().sendmail(from_addr, to_addrs, msg, mail_options, rcpt_options)
        assert isinstance(msg, bytes)
        (outcome,) = self.send_pipelined([(from_addr, recipients[0], msg, mail_options)])
        if outcome is not None:
            raise outcome
        return {}

    def send_pipelined(
        self,
        transactions: Iterable[Transaction | None],
        final: Callable[[int, Exception | None], None] = _ignore,
    ) -> list[Exception | None]:
        """Sends each transaction, pipelined where `sendmail` would pipeline it, and each
        message's content in one write with the next transaction's MAIL, RCPT and DATA (RFC 2920
        lets content start a group): one round trip per e-mail instead of two.

        Returns the outcomes of a prefix of `transactions`, each None (accepted, or skipped: a
        None transaction, taken from the iterable just before its turn) or what smtplib's
        sendmail raises for it. It stops early only when the connection fails or the
        server closes it (421); the connection is then closed, and the failure is the outcome
        of the e-mail in flight and of one whose content was sent but not answered. The e-mails
        after them were not sent. `final(n, outcome)` hears each outcome as soon as it can no
        longer change, in order."""
        self.ehlo_or_helo_if_needed()
        outcomes = _Outcomes(final)
        content = b""  # the last transaction's message, not yet sent (its outcome is last)
        in_flight = False  # a transaction begun whose outcome is not in `outcomes` yet
        try:
            for transaction in transactions:
                if self.sock is None:
                    break  # closed after a 421
                if transaction is None:
                    outcomes.append(None)
                    continue
                sender, recipient, msg, options = transaction
                in_flight = True
                if self._pipelines(msg, 1):
                    self.send(content + self._envelope(sender, recipient, len(msg), options))
                    if content:
                        content, outcomes[-1] = b"", self._content_reply(more_sent=True)
                        if self.sock is None:  # closed on a 421 to that message
                            raise smtplib.SMTPServerDisconnected("the server closed the connection")
                    outcomes.append(self._envelope_replies(sender, recipient))
                    if outcomes[-1] is None:
                        content = _terminated(msg)
                else:
                    if content:
                        outcomes[-1] = self._end_content(content)
                        content = b""
                    outcomes.append(self._one_by_one(sender, recipient, msg, options))
                in_flight = False
                outcomes.tell(last_pending=bool(content))
            if content:
                outcomes[-1] = self._end_content(content)
        except (smtplib.SMTPException, OSError) as exc:
            # Lost, timed out, or a reply smtplib cannot read: nothing more on this connection.
            self.close()
            _failed(outcomes, exc, unanswered=bool(content), in_flight=in_flight)
        outcomes.tell()
        return list(outcomes)

    def _envelope(self, sender: str, recipient: str, size: int, options: Sequence[str]) -> bytes:
        # As smtplib's sendmail: SIZE first, then the caller's options.
        sizes = [f"size={size}"] if self.has_extn("size") else []
        command = " ".join((f"mail FROM:{_quoted(sender)}", *sizes, *options))
        return f"{command}\r\nrcpt TO:{_quoted(recipient)}\r\ndata\r\n".encode()

    def _envelope_replies(self, sender: str, recipient: str) -> Exception | None:
        """MAIL's, RCPT's and DATA's replies: None when the server waits for the content."""
        mail, rcpt, data = self.getreply(), self.getreply(), self.getreply()
        if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
            self.send(b".\r\n")  # a server that took DATA anyway: end the empty message
            self.getreply()
        if mail[0] != 250:
            _refused(self, mail[0])
            return smtplib.SMTPSenderRefused(mail[0], mail[1], sender)
        if rcpt[0] not in (250, 251):
            _refused(self, rcpt[0])
            return smtplib.SMTPRecipientsRefused({recipient: rcpt})
        if data[0] != 354:
            _refused(self, data[0])
            return smtplib.SMTPDataError(*data)
        return None

    def _end_content(self, content: bytes) -> Exception | None:
        self.send(content)
        return self._content_reply(more_sent=False)

    def _content_reply(self, *, more_sent: bool) -> Exception | None:
        code, reply = self.getreply()
        if code == 250:
            return None
        if code == 421 or not more_sent:
            _refused(self, code)
        # Else no RSET: the reply ended that transaction (RFC 5321), and the next one's commands
        # are on the wire already, so a RSET's reply would be read as theirs.
        return smtplib.SMTPDataError(code, reply)

    def _one_by_one(
        self, sender: str, recipient: str, msg: bytes, options: Sequence[str]
    ) -> Exception | None:
        try:
            self.sendmail(sender, [recipient], msg, options)  # not pipelined: smtplib's
        except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused) as refusal:
            return refusal
        return None


def _prepared(client: smtplib.SMTP, message: OutgoingEmail) -> Transaction:
    """`message` as a transaction on `client`. Bytes beyond ASCII (8bit parts) are declared
    with BODY=8BITMIME to a server that offers it; for one that does not, the message is
    converted (its 8bit parts base64), as RFC 6152 requires."""
    data = message.data
    options: tuple[str, ...] = ()
    if not data.isascii():
        client.ehlo_or_helo_if_needed()
        if client.has_extn("8bitmime"):
            options = ("BODY=8BITMIME",)
        else:
            data = seven_bit(data)
    return message.sender, message.recipient, data, options


def send_to(client: smtplib.SMTP, message: OutgoingEmail) -> None:
    """Sends `message` on `client`, raising what smtplib's sendmail raises."""
    sender, recipient, data, options = _prepared(client, message)
    client.sendmail(sender, [recipient], data, options)


class SmtpSslConnection(SmtpConnection, smtplib.SMTP_SSL):
    """The same over implicit TLS (SMTP_SSL's socket, SmtpConnection's sending)."""


# A send waiting for a sender thread: the message, the loop to answer on, the answer, and the
# trace context to send it in (None when tracing is off). Threads do not inherit contextvars,
# so the sender thread attaches the step's context itself.
_Job = tuple[OutgoingEmail, asyncio.AbstractEventLoop, "asyncio.Future[None]", Context | None]


def _end_span(span: Span, failure: Exception | None) -> None:
    if failure is not None:
        # What the failure means to us (outage, transient, permanent), low-cardinality.
        span.set_attribute("error.type", type(failure).__name__)
        span.record_exception(failure)
        span.set_status(Status(StatusCode.ERROR, f"{type(failure).__name__}: {failure}"))
    span.end()


def _classified(exc: Exception) -> TransientMailError | PermanentMailError:
    failure = classify(exc)
    failure.__cause__ = exc
    return failure


def _never(_: int) -> bool:
    return False


class _Answers:
    """One pass over a connection: its outcomes classified and answered as each is known."""

    def __init__(
        self, start: int, answered: Callable[[int, Exception | None], None], *, hold: bool
    ) -> None:
        self.outcomes: list[Exception | None] = []
        self.held = False
        self._start, self._answered, self._hold = start, answered, hold

    def final(self, n: int, raw: Exception | None) -> None:
        if self.held or (self._hold and n == 0 and _disconnected(raw)):
            self.held = True  # the pass ends here, and is made again on a new connection
            return
        self.outcomes.append(None if raw is None else _classified(raw))
        self._answered(self._start + n, self.outcomes[-1])


def _disconnected(outcome: Exception | None) -> bool:
    return isinstance(outcome, smtplib.SMTPServerDisconnected)


# At most this many queued sends go pipelined on one connection in one batch.
SENDS_PER_BATCH = 16
# The longest close() waits for the server's answer to QUIT on each idle connection. QUIT is a
# courtesy: a server that stopped answering held a stop SMTP_TIMEOUT_S per connection (16 ×
# 10 s by default), past the services' stop limit.
QUIT_TIMEOUT_S = 1.0


class SmtpMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._idle: queue.LifoQueue[SmtpConnection] = queue.LifoQueue()
        # One sender thread per pooled connection, fed by a queue: send_async costs one put and
        # one call_soon_threadsafe, not an executor's work item, concurrent future and chaining.
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._senders: list[threading.Thread] = []
        self._loop = BoundLoop()
        self._senders_lock = threading.Lock()

    def _tls_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self._settings.ca_file)
        except OSError as exc:
            # The ssl module names no file in a missing or unreadable CA bundle's error.
            if exc.filename is None and not isinstance(exc, ssl.SSLError):
                exc.filename = self._settings.ca_file
            raise

    def _connect(self) -> SmtpConnection:
        s = self._settings
        client: SmtpConnection
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

    def warm_up(self) -> None:
        """Blocking: starts the sender threads and opens one pooled connection (EHLO, STARTTLS,
        login) before the first e-mail needs them. Raises what `classify` makes of a failure,
        so a relay that is down or refuses our settings is named at start, not at the first
        order; nothing else changes (e-mails wait for it and are retried as always)."""
        self._start_senders()
        try:
            client = self._connect()
        except (smtplib.SMTPException, OSError) as exc:
            raise _classified(exc) from None
        self._idle.put(client)

    def send(self, message: OutgoingEmail) -> None:
        """Blocking send on a pooled connection; raises what `classify` makes of a failure."""
        (failure,) = self.send_all([message])
        if failure is not None:
            raise failure

    def send_all(
        self,
        messages: Sequence[OutgoingEmail],
        withdrawn: Callable[[int], bool] = _never,
        answered: Callable[[int, Exception | None], None] = _ignore,
    ) -> list[Exception | None]:
        """Blocking: sends `messages` in order on a pooled connection, pipelined, and returns
        each one's outcome: None (accepted) or what `classify` makes of its failure. When the
        connection is lost, the e-mails not yet sent go on a new one. `withdrawn(n)`, asked just
        before the n-th message's turn, skips it (its outcome is None). `answered(n, outcome)`
        hears each outcome as soon as it is known, once, in order."""
        outcomes: list[Exception | None] = []
        may_replace = True
        while len(outcomes) < len(messages):
            try:
                client, reused = self._idle.get_nowait(), True
            except queue.Empty:
                try:
                    client, reused = self._connect(), False
                except (smtplib.SMTPException, OSError) as exc:
                    for n in range(len(outcomes), len(messages)):
                        outcomes.append(_classified(exc))
                        answered(n, outcomes[-1])
                    return outcomes
            # An idle connection the server closed gets one fresh attempt, not an error: its
            # first outcome, if a disconnection, is held until the pass ends.
            answers = _Answers(len(outcomes), answered, hold=reused and may_replace)
            sent = client.send_pipelined(
                (
                    None if withdrawn(n) else _prepared(client, messages[n])
                    for n in range(len(outcomes), len(messages))
                ),
                answers.final,
            )
            if client.sock is not None:
                self._idle.put(client)
            if answers.held:
                may_replace = False
                continue
            outcomes += answers.outcomes
            if not sent:  # never for an open connection; a guard against a loop without end
                outcomes.append(MailOutageError("the SMTP connection closed before sending"))
                answered(len(outcomes) - 1, outcomes[-1])
        return outcomes

    async def send_async(self, message: OutgoingEmail) -> None:
        """`send` on a sender thread; the loop is free meanwhile."""
        if not self._senders:
            self._start_senders()
        loop = self._loop()
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
        """Takes its share of the queued sends (up to `SENDS_PER_BATCH`) and sends them
        pipelined: under load a thread waits for one reply per e-mail instead of two. A share,
        not all: the other connections' threads keep sending beside it."""
        running = True
        while running and (job := self._jobs.get()) is not None:
            jobs = [job]
            share = min(SENDS_PER_BATCH, 1 + self._jobs.qsize() // self._settings.connections)
            while len(jobs) < share:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    running = False
                    break
                jobs.append(job)
            self._send_jobs(jobs)

    def _send_jobs(self, jobs: list[_Job]) -> None:
        spans = [None if parent is None else self._span(m, parent) for m, _, _, parent in jobs]
        told = 0

        def answer(n: int, failure: Exception | None) -> None:
            """Each send's task resumes as soon as its e-mail's reply is read, not with the
            batch's last: a send slot waits no longer than without batches."""
            nonlocal told
            told = n + 1
            _, loop, done, _ = jobs[n]
            if (span := spans[n]) is not None:
                _end_span(span, failure)
            answer_from_thread(loop, done, None, failure)

        try:
            # As an executor drops a cancelled call that has not started.
            self.send_all(
                [message for message, _, _, _ in jobs], lambda n: jobs[n][2].cancelled(), answer
            )
        except Exception as exc:  # a bug: handed to the awaiting tasks, raised there
            for n in range(told, len(jobs)):
                answer(n, exc)

    def _span(self, message: OutgoingEmail, parent: Context) -> Span:
        """An `smtp send` CLIENT span, a child of the step that asked for the send."""
        attributes: dict[str, str | int] = {
            "server.address": self._settings.host,
            "server.port": self._settings.port,
            "pedidos.email.message_id": message.message_id,
        }
        return tracing.tracer().start_span(
            "smtp send", context=parent, kind=SpanKind.CLIENT, attributes=attributes
        )

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
                if client.sock is not None:
                    client.sock.settimeout(min(QUIT_TIMEOUT_S, self._settings.timeout_s))
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
