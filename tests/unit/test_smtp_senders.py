"""SmtpMailer's sender threads and its DATA shortcut, against fake connections (no sockets)."""

from __future__ import annotations

import asyncio
import io
import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from devkit.orders import make_details
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.smtp_mailer import SmtpConnection, SmtpMailer, SmtpSettings
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.ports import MailOutageError, OutgoingEmail, PermanentMailError, WireMessage
from tests.unit.fakes import FakeSmtpConnection


def email(recipient: str, data: bytes = b"Subject: x\r\n\r\nbody\r\n") -> OutgoingEmail:
    return OutgoingEmail("ventas@tienda.cl", recipient, f"<{recipient}>", data)


class FakeClient(FakeSmtpConnection):
    """Records what it sent, refuses listed recipients, may have died idle."""

    def __init__(
        self, log: list[tuple[int, str]], number: int, refuse: dict[str, int], delay: float
    ) -> None:
        super().__init__()
        self.log, self.number, self.refuse, self.delay = log, number, refuse, delay
        self.dead = False
        self.gate: threading.Event | None = None

    def deliver(self, recipient: str, data: bytes) -> None:
        if self.dead:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.delay)
        code = self.refuse.get(recipient)
        if code is not None:
            raise smtplib.SMTPRecipientsRefused({recipient: (code, b"5.1.1 no such user")})
        self.log.append((self.number, recipient))


class FakeServer:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.clients: list[FakeClient] = []
        self.refuse: dict[str, int] = {}
        self.down = False
        self.delay = 0.0

    def connect(self) -> FakeClient:
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        client = FakeClient(self.sent, len(self.clients), self.refuse, self.delay)
        self.clients.append(client)
        return client


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def make_mailer(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[int], SmtpMailer]]:
    mailers: list[SmtpMailer] = []

    def make(connections: int) -> SmtpMailer:
        mailer = SmtpMailer(SmtpSettings("127.0.0.1", 25, connections=connections))
        monkeypatch.setattr(mailer, "_connect", server.connect)
        mailers.append(mailer)
        return mailer

    yield make
    for mailer in mailers:
        mailer.close()


def test_each_send_gets_its_own_outcome_in_order_on_one_connection(
    server: FakeServer, make_mailer: Callable[[int], SmtpMailer]
) -> None:
    mailer = make_mailer(1)
    server.refuse["nadie@example.cl"] = 550
    recipients = [f"c{n}@example.cl" for n in range(20)]
    recipients.insert(7, "nadie@example.cl")

    async def main() -> list[BaseException | None]:
        return await asyncio.gather(
            *(mailer.send_async(email(r)) for r in recipients), return_exceptions=True
        )

    outcomes = asyncio.run(main())
    refused = outcomes.pop(7)
    assert isinstance(refused, PermanentMailError)
    assert "recipient refused: 550 5.1.1" in str(refused)
    assert outcomes == [None] * 20
    recipients.remove("nadie@example.cl")
    # One sender, so submission order; after a refused recipient (smtplib resets the
    # transaction) the connection goes on.
    assert server.sent == [(0, r) for r in recipients]
    assert len(server.clients) == 1


def test_every_sender_thread_sends_and_no_more_connections_than_configured(
    server: FakeServer, make_mailer: Callable[[int], SmtpMailer]
) -> None:
    mailer = make_mailer(3)

    async def main() -> None:
        await asyncio.gather(*(mailer.send_async(email(f"c{n}@example.cl")) for n in range(60)))

    asyncio.run(main())
    assert sorted(r for _, r in server.sent) == sorted(f"c{n}@example.cl" for n in range(60))
    assert len(server.clients) <= 3


def test_an_unreachable_server_is_an_outage_raised_in_the_awaiting_task(
    server: FakeServer, make_mailer: Callable[[int], SmtpMailer]
) -> None:
    mailer = make_mailer(2)
    server.down = True
    with pytest.raises(MailOutageError, match="unreachable: ConnectionRefusedError"):
        asyncio.run(mailer.send_async(email("c@example.cl")))
    server.down = False
    asyncio.run(mailer.send_async(email("c@example.cl")))  # a new loop, the same senders
    assert server.sent == [(0, "c@example.cl")]


def test_a_connection_the_server_closed_while_idle_is_replaced(
    server: FakeServer, make_mailer: Callable[[int], SmtpMailer]
) -> None:
    mailer = make_mailer(1)

    async def main() -> None:
        await mailer.send_async(email("a@example.cl"))
        server.clients[0].dead = True
        await mailer.send_async(email("b@example.cl"))

    asyncio.run(main())
    assert server.sent == [(0, "a@example.cl"), (1, "b@example.cl")]
    assert server.clients[0].closed


def test_a_send_cancelled_before_its_turn_is_not_sent(
    server: FakeServer, make_mailer: Callable[[int], SmtpMailer]
) -> None:
    mailer = make_mailer(1)
    gate = threading.Event()

    async def main() -> None:
        await mailer.send_async(email("warm@example.cl"))
        server.clients[0].gate = gate  # the next send blocks its only sender thread
        first = asyncio.create_task(mailer.send_async(email("first@example.cl")))
        second = asyncio.create_task(mailer.send_async(email("second@example.cl")))
        await asyncio.sleep(0.05)
        second.cancel()
        gate.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await second
        await mailer.send_async(email("third@example.cl"))

    asyncio.run(main())
    assert [r for _, r in server.sent] == [
        "warm@example.cl",
        "first@example.cl",
        "third@example.cl",
    ]


def test_close_finishes_the_queued_sends(
    server: FakeServer, make_mailer: Callable[[int], SmtpMailer]
) -> None:
    mailer = make_mailer(1)
    server.delay = 0.02

    async def main() -> list[str]:
        tasks = [
            asyncio.create_task(mailer.send_async(email(f"c{n}@example.cl"))) for n in range(5)
        ]
        await asyncio.sleep(0)  # all five queued
        await asyncio.to_thread(mailer.close)
        sent_by_close = [r for _, r in server.sent]
        await asyncio.gather(*tasks)
        return sent_by_close

    assert asyncio.run(main()) == [f"c{n}@example.cl" for n in range(5)]
    assert server.clients[0].closed  # quit on close


class RecordingSocket:
    def __init__(self) -> None:
        self.sent = bytearray()

    def sendall(self, data: bytes) -> None:
        self.sent += data


def wire(client: smtplib.SMTP, data: bytes) -> bytes:
    """The bytes `client.data(data)` writes, against a server accepting DATA."""
    sock = RecordingSocket()
    client.sock = sock  # type: ignore[assignment]
    client.file = io.BytesIO(b"354 go ahead\r\n250 2.0.0 queued\r\n")
    assert client.data(data) == (250, b"2.0.0 queued")
    return bytes(sock.sent)


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: x\r\n\r\nYm9keQ==\r\n",
        b"Subject: x\r\n\r\nno final line end",
        b".starts with a dot\r\n",
        b"Subject: x\r\n\r\n.\r\n..two\r\nend\r\n",
        b"Subject: x\r\n\r\nbare\n.dot after LF\r\n",
        b"",
    ],
)
def test_data_sends_what_smtplib_sends(data: bytes) -> None:
    """The shortcut skips smtplib's dot-quoting regex only where it would change nothing."""
    assert wire(SmtpConnection(), data) == wire(smtplib.SMTP(), data)


def test_a_rendered_email_is_sent_as_smtplib_sends_it_without_being_searched() -> None:
    """The renderer's WireMessage skips the search for dot-led lines (its property tests prove
    it has none); what goes out is still what smtplib would send."""
    order = Order("9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41", make_details(), datetime.now(UTC))
    data = (
        EmailRenderer("Tienda <ventas@tienda.cl>")
        .render(order, OrderState.ENVIADO, order.accepted_at)
        .data
    )
    assert isinstance(data, WireMessage)
    assert wire(SmtpConnection(), data) == wire(smtplib.SMTP(), bytes(data))


def test_data_refused_is_smtplibs_error() -> None:
    client = SmtpConnection()
    client.sock = RecordingSocket()  # type: ignore[assignment]
    client.file = io.BytesIO(b"554 5.7.1 no\r\n")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.data(b"Subject: x\r\n\r\nbody\r\n")
    assert refused.value.smtp_code == 554
