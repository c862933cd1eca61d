"""SmtpConnection.send_pipelined against scripted server replies (no sockets): what it writes,
each transaction's outcome, and where it stops when the connection fails."""

from __future__ import annotations

import io
import smtplib

from pedidos.adapters.smtp_mailer import SmtpConnection, Transaction

OK = b"250 2.0.0 OK\r\n"
ENVELOPE_OK = b"250 OK\r\n250 OK\r\n354 go ahead\r\n"
REFUSED = b"250 OK\r\n550 5.1.1 no such user\r\n503 need RCPT\r\n"


class RecordingSocket:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        pass


def connection(replies: bytes) -> tuple[SmtpConnection, RecordingSocket]:
    """A connection after EHLO to a server offering PIPELINING, answering with `replies`."""
    client = SmtpConnection()
    sock = RecordingSocket()
    client.sock = sock  # type: ignore[assignment]
    client.file = io.BytesIO(replies)
    client.ehlo_resp = b"ok"
    client.does_esmtp = True
    client.esmtp_features = {"pipelining": "", "size": ""}
    return client, sock


def transaction(n: int) -> Transaction:
    return ("ventas@tienda.cl", f"c{n}@example.cl", f"Subject: {n}\r\n\r\nbody\r\n".encode(), ())


def test_each_message_goes_with_the_next_envelope_one_write_per_e_mail_and_one_more() -> None:
    client, sock = connection((ENVELOPE_OK + OK) * 3)
    assert client.send_pipelined([transaction(n) for n in range(3)]) == [None, None, None]
    assert len(sock.writes) == 4
    first, second, _, last = sock.writes
    assert first.startswith(b"mail FROM:<ventas@tienda.cl> size=20\r\nrcpt TO:<c0@example.cl>")
    assert second == b"Subject: 0\r\n\r\nbody\r\n.\r\n" + first.replace(b"c0@", b"c1@")
    assert last == b"Subject: 2\r\n\r\nbody\r\n.\r\n"


def test_a_refused_recipient_and_a_refused_message_are_their_own_outcomes() -> None:
    refused_content = b"554 5.6.0 content refused\r\n"
    # The first message refused with the second's envelope on the wire: no RSET, whose reply
    # would be read as MAIL's; the refused recipient's transaction is reset, as smtplib does.
    replies = ENVELOPE_OK + refused_content + REFUSED + b"250 reset\r\n" + ENVELOPE_OK + OK
    client, sock = connection(replies)
    outcomes = client.send_pipelined([transaction(n) for n in range(3)])
    assert outcomes[2] is None
    assert isinstance(outcomes[1], smtplib.SMTPRecipientsRefused)
    assert outcomes[1].recipients == {"c1@example.cl": (550, b"5.1.1 no such user")}
    assert isinstance(outcomes[0], smtplib.SMTPDataError)
    assert outcomes[0].smtp_code == 554
    assert client.sock is not None  # both reset the transaction; the connection goes on
    assert sock.writes.count(b"rset\r\n") == 1
    assert sock.writes.index(b"rset\r\n") == 2  # after the refused recipient's replies


def test_a_connection_lost_fails_the_unanswered_message_and_the_one_in_flight_only() -> None:
    # The server answers the first e-mail, then closes while the second's envelope is sent.
    client, _ = connection(ENVELOPE_OK + OK + ENVELOPE_OK)
    outcomes = client.send_pipelined(iter([transaction(n) for n in range(5)]))
    assert outcomes[0] is None
    assert len(outcomes) == 3  # the fourth and fifth were not sent
    assert all(isinstance(e, smtplib.SMTPServerDisconnected) for e in outcomes[1:])
    assert client.sock is None


def test_the_last_message_unanswered_is_the_only_failure() -> None:
    client, _ = connection(ENVELOPE_OK + OK + ENVELOPE_OK)
    outcomes = client.send_pipelined([transaction(0), transaction(1)])
    assert outcomes[0] is None
    assert isinstance(outcomes[1], smtplib.SMTPServerDisconnected)
    assert len(outcomes) == 2


def test_a_421_closes_the_connection_and_ends_the_batch() -> None:
    client, _ = connection(ENVELOPE_OK + b"421 4.3.2 closing\r\n")
    outcomes = client.send_pipelined([transaction(n) for n in range(3)])
    assert len(outcomes) == 2
    assert isinstance(outcomes[0], smtplib.SMTPDataError)
    assert outcomes[0].smtp_code == 421
    assert isinstance(outcomes[1], smtplib.SMTPServerDisconnected)  # its envelope went unanswered
    assert client.sock is None


def test_a_skipped_transaction_sends_nothing() -> None:
    client, sock = connection(ENVELOPE_OK + OK)
    assert client.send_pipelined([None, transaction(1), None]) == [None, None, None]
    assert b"c1@example.cl" in sock.writes[0]
    assert len(sock.writes) == 2


def test_each_outcome_is_told_as_soon_as_its_reply_is_read() -> None:
    """A batch's first e-mail is answered while the rest are still being sent, so its send
    slot is not held for the whole batch."""
    client, sock = connection((ENVELOPE_OK + OK) * 3)
    told: list[tuple[int, Exception | None, int]] = []
    outcomes = client.send_pipelined(
        [transaction(n) for n in range(3)], lambda n, e: told.append((n, e, len(sock.writes)))
    )
    assert outcomes == [None, None, None]
    # (e-mail, outcome, writes made when told): the first after the write with its content.
    assert told == [(0, None, 2), (1, None, 3), (2, None, 4)]


def test_a_lost_connection_is_told_for_the_unanswered_and_the_one_in_flight() -> None:
    client, _ = connection(ENVELOPE_OK + OK + ENVELOPE_OK)
    told: list[int] = []
    outcomes = client.send_pipelined(
        [transaction(n) for n in range(5)], lambda n, e: told.append(n)
    )
    assert told == [0, 1, 2] == list(range(len(outcomes)))
