"""Sends e-mails with smtplib over a small pool of reused, authenticated connections."""

from __future__ import annotations

import asyncio
import logging
import queue
import smtplib
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pedidos.notifications.render import OutgoingEmail

log = logging.getLogger(__name__)


class TransientMailError(Exception):
    """Worth retrying later: server down, 4xx, timeout, bad credentials being fixed."""


class PermanentMailError(Exception):
    """The server refused this message for good (5xx); retrying cannot help."""


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


def _classify(exc: Exception) -> Exception:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(500 <= code < 600 for code in codes):
            return PermanentMailError(f"recipient refused: {exc.recipients}")
        return TransientMailError(f"recipient deferred: {exc.recipients}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return TransientMailError(
            f"SMTP authentication failed ({exc.smtp_code}); check SMTP_USER/SMTP_PASSWORD"
        )
    if isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600:
        return PermanentMailError(f"{exc.smtp_code} {exc.smtp_error!r}")
    return TransientMailError(f"{exc.__class__.__name__}: {exc}")


class SmtpMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._idle: queue.LifoQueue[smtplib.SMTP] = queue.LifoQueue()
        self._executor = ThreadPoolExecutor(
            max_workers=settings.connections, thread_name_prefix="smtp"
        )

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self._settings.ca_file)

    def _connect(self) -> smtplib.SMTP:
        s = self._settings
        client: smtplib.SMTP
        if s.ssl:
            client = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout_s, context=self._tls_context()
            )
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
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
        """Blocking send on a pooled connection; raises Transient- or PermanentMailError."""
        try:
            client = self._idle.get_nowait()
            reused = True
        except queue.Empty:
            client, reused = None, False
        try:
            if client is None:
                client = self._connect()
            try:
                client.sendmail(message.sender, [message.recipient], message.data)
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # An idle connection the server closed: one fresh attempt, not an error.
                client.close()
                client = self._connect()
                client.sendmail(message.sender, [message.recipient], message.data)
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
            raise _classify(exc) from exc
        finally:
            if client is not None:
                self._idle.put(client)

    async def send_async(self, message: OutgoingEmail) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.send, message)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        while True:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                return
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
