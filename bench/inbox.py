"""Reads which state e-mails each order received from the Maildir sink (headers only)."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

_HEADER = re.compile(rb"^X-Pedidos-(Order-Id|State):[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
HEAD_BYTES = 4 * 1024  # the X-Pedidos-* headers sit well inside the header block


def parse_head(head: bytes) -> tuple[str | None, str | None]:
    """(order id, state slug) from the start of a message; None where a header is missing."""
    headers = _BLANK_LINE.split(head, maxsplit=1)[0]
    found = {
        name.decode().lower(): value.decode(errors="replace")
        for name, value in _HEADER.findall(headers)
    }
    return found.get("order-id"), found.get("state")


def states_by_order(maildir: Path, wanted: set[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    new = maildir / "new"
    if not new.exists():
        return found
    with os.scandir(new) as entries:
        for entry in entries:
            with open(entry.path, "rb") as handle:
                order_id, state = parse_head(handle.read(HEAD_BYTES))
            if order_id in wanted:
                found[order_id].append(state or "?")
    return found
