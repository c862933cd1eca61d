"""The mail sink's Maildir read back: which state e-mails each order received, in arrival order.
One reader for tests, the bench and the demo; it reads only each message's first bytes."""

from __future__ import annotations

import os
import re
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage, Message
from pathlib import Path

from pedidos.adapters.email.preview import body
from pedidos.domain.states import ALL_STATES

STATE_SLUGS = [state.slug for state in ALL_STATES]  # one e-mail each, in this order
HEAD_BYTES = 4 * 1024  # the X-Pedidos-* headers sit well inside the header block
_HEADER = re.compile(rb"^X-Pedidos-(Order-Id|State):[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def parse_head(head: bytes) -> tuple[str | None, str | None]:
    """(order id, state slug) from the start of a message; None where a header is missing."""
    headers = _BLANK_LINE.split(head, maxsplit=1)[0]
    found = {
        name.decode().lower(): value.decode(errors="replace")
        for name, value in _HEADER.findall(headers)
    }
    return found.get("order-id"), found.get("state")


@dataclass(frozen=True, slots=True)
class _Mail:
    arrival: tuple[int, int, int]
    order_id: str | None
    state: str | None
    path: Path


class _MaildirIndex:
    """Every message of one Maildir, each file read once: a poll lists the directory and reads
    only the files it has not seen (a test session's or a bench run's Maildir grows large)."""

    def __init__(self, maildir: Path) -> None:
        self._new = maildir / "new"
        self._mails: dict[str, _Mail] = {}
        self._in_order: list[_Mail] = []
        self._lock = threading.Lock()

    def _read(self, name: str) -> _Mail | None:
        path = self._new / name
        try:
            with open(path, "rb") as handle:
                order_id, state = parse_head(handle.read(HEAD_BYTES))
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:  # removed since the listing
            return None
        # Maildir names: <seconds>.M<microseconds>P<pid>Q<counter>.<host>
        seconds, _, rest = name.partition(".")
        micro = rest[1:].split("P", 1)[0] if rest.startswith("M") else "0"
        return _Mail((int(seconds), int(micro or 0), mtime), order_id, state, path)

    def mails(self) -> list[_Mail]:
        """Every message, in arrival order."""
        with self._lock:
            try:
                names = set(os.listdir(self._new))
            except FileNotFoundError:
                names = set()
            changed = False
            for gone in self._mails.keys() - names:  # a Maildir emptied by hand or by clear()
                del self._mails[gone]
                changed = True
            for name in names - self._mails.keys():
                mail = self._read(name)
                if mail is not None:
                    self._mails[name] = mail
                    changed = True
            if changed:
                self._in_order = sorted(self._mails.values(), key=lambda mail: mail.arrival)
            return self._in_order


_INDEXES: dict[Path, _MaildirIndex] = {}
_INDEXES_LOCK = threading.Lock()


class Inbox:
    """Reads the mail sink's Maildir. Every Inbox of one Maildir shares one index, so a poll
    reads only the messages that arrived since the previous poll of any of them."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        with _INDEXES_LOCK:
            self._index = _INDEXES.setdefault(maildir.resolve(), _MaildirIndex(maildir))

    def states_by_order(self, order_ids: Iterable[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        for order_id, state in self.arrivals(order_ids):
            found[order_id].append(state)
        return found

    def arrivals(self, order_ids: Iterable[str]) -> list[tuple[str, str]]:
        """(order id, state slug) of every e-mail of these orders, in arrival order."""
        wanted = set(order_ids)
        return [
            (mail.order_id, mail.state or "?")
            for mail in self._index.mails()
            if mail.order_id is not None and mail.order_id in wanted
        ]

    def messages_for(self, order_id: str) -> list[bytes]:
        return [mail.path.read_bytes() for mail in self._index.mails() if mail.order_id == order_id]

    def count(self) -> int:
        """Messages in the Maildir now (a directory listing: no message is read)."""
        try:
            with os.scandir(self.maildir / "new") as entries:
                return sum(1 for _ in entries)
        except FileNotFoundError:
            return 0

    def clear(self) -> None:
        """Delete every received message (between the phases of a long bench run)."""
        try:
            with os.scandir(self.maildir / "new") as entries:
                for entry in entries:
                    os.unlink(entry.path)
        except FileNotFoundError:
            return


def transfer_encodings(message: Message) -> list[str]:
    """The Content-Transfer-Encoding of each part under the top one, in order."""
    return [str(part["Content-Transfer-Encoding"]) for part in message.walk()][1:]


def part_text(message: EmailMessage, subtype: str) -> str:
    """The text of an e-mail's `plain` or `html` part (see `body`); fails if it has none."""
    return body(message, subtype)
