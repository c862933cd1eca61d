"""devkit's Inbox reads a Maildir incrementally: each message once, however often it polls, and
only its headers."""

from __future__ import annotations

import mailbox
from pathlib import Path

from devkit.inbox import Inbox, parse_head


def mail(order_id: str, state: str) -> bytes:
    return f"X-Pedidos-Order-Id: {order_id}\nX-Pedidos-State: {state}\n\ncuerpo\n".encode()


def test_a_poll_sees_new_messages_in_arrival_order_and_reads_old_ones_only_once(
    tmp_path: Path,
) -> None:
    box = mailbox.Maildir(tmp_path / "box", create=True)
    first = box.add(mail("a", "procesando"))
    box.add(mail("b", "procesando"))
    inbox = Inbox(tmp_path / "box")
    assert inbox.arrivals(["a", "b"]) == [("a", "procesando"), ("b", "procesando")]

    # Rewritten in place after it was read: a poll that re-read old files would see the change.
    (tmp_path / "box" / "new" / first).write_bytes(mail("a", "reescrito"))
    box.add(mail("a", "preparacion"))
    assert inbox.states_by_order(["a"]) == {"a": ["procesando", "preparacion"]}
    # Another Inbox of the same Maildir shares what was read.
    assert Inbox(tmp_path / "box").states_by_order(["a"]) == {"a": ["procesando", "preparacion"]}
    assert [m.endswith(b"cuerpo\n") for m in inbox.messages_for("a")] == [True, True]

    box.remove(first)
    assert inbox.arrivals(["a", "b"]) == [("b", "procesando"), ("a", "preparacion")]


def test_a_maildir_not_created_yet_is_empty(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "later")
    assert inbox.states_by_order(["a"]) == {}
    mailbox.Maildir(tmp_path / "later", create=True).add(mail("a", "procesando"))
    assert inbox.states_by_order(["a"]) == {"a": ["procesando"]}


def test_the_inbox_reads_order_and_state_from_the_headers_only() -> None:
    head = (
        b"Subject: =?utf-8?q?Pedido?=\r\nX-Pedidos-Order-Id: 1234\r\nX-Pedidos-State: enviado\r\n"
        b"\r\nX-Pedidos-State: in the body, ignored\r\n"
    )
    assert parse_head(head) == ("1234", "enviado")
    assert parse_head(b"Subject: x\n\nbody") == (None, None)


def test_count_and_clear_see_every_message_without_reading_one(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "box")
    assert inbox.count() == 0
    inbox.clear()  # nothing there yet: nothing to do
    box = mailbox.Maildir(tmp_path / "box", create=True)
    for state in ("procesando", "preparacion", "enviado"):
        box.add(mail("a", state))
    assert inbox.count() == 3
    inbox.clear()
    assert inbox.count() == 0
    assert inbox.states_by_order(["a"]) == {}
