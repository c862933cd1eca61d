"""Dead-letter records as the consumer writes them, the filters over them and their summary.

The consumer appends three headers to what it dead-letters (consumer/dead_letters.py, DeadLetters):
`pedidos-dlq-kind` (`record`: a Kafka record it cannot process; `notification`: an e-mail the
mail server refused for good), `pedidos-error` (the reason) and `pedidos-source`
(`topic/partition/offset` of a record). A record keeps its own headers in front of them, so the
*last* occurrence of each name is the consumer's.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr
from typing import Any

from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.ports import OutgoingEmail

KIND_HEADER = "pedidos-dlq-kind"
ERROR_HEADER = "pedidos-error"
SOURCE_HEADER = "pedidos-source"
# Put on a replayed record, so its origin in the dead-letter topic can be traced.
REPLAYED_FROM_HEADER = "pedidos-replayed-from"
KIND_RECORD = "record"
KIND_NOTIFICATION = "notification"
KINDS = (KIND_RECORD, KIND_NOTIFICATION)
DLQ_HEADERS = (KIND_HEADER, ERROR_HEADER, SOURCE_HEADER)

Headers = list[tuple[str, bytes | None]]

_STATES_BY_SLUG = {state.slug: state for state in ALL_STATES}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_EMAIL = re.compile(r"[^\s'\"<>(){}\[\],:;]+@[^\s'\"<>(){}\[\],:;]+")
_OFFSET = re.compile(r"\b\d+ bytes\b|/\d+/\d+\b")


class DeadLetterError(Exception):
    """A dead-letter record that cannot be used the way it was asked (says why)."""


@dataclass(frozen=True, slots=True)
class SourceRef:
    topic: str
    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> SourceRef | None:
        """`topic/partition/offset`; topic names may not contain '/', so split from the right."""
        topic, _, rest = text.rpartition("/")
        topic, _, partition = topic.rpartition("/")
        if not topic or not partition.isdigit() or not rest.isdigit():
            return None
        return cls(topic, int(partition), int(rest))

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    key: bytes | None
    value: bytes | None
    headers: Headers

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    def header(self, name: str) -> str | None:
        """The last value of `name` (the consumer's, when the record brought its own too)."""
        for key, value in reversed(self.headers):
            if key == name:
                return None if value is None else value.decode("utf-8", errors="replace")
        return None

    @property
    def kind(self) -> str:
        return self.header(KIND_HEADER) or "unknown"

    @property
    def reason(self) -> str:
        return self.header(ERROR_HEADER) or ""

    @property
    def source(self) -> SourceRef | None:
        text = self.header(SOURCE_HEADER)
        return SourceRef.parse(text) if text else None

    @property
    def order_id(self) -> str:
        return (self.key or b"").decode("utf-8", errors="replace")

    def original_headers(self) -> Headers:
        """The record's headers without the three the consumer appended to dead-letter it."""
        kept = list(self.headers)
        for name in DLQ_HEADERS:
            for index in range(len(kept) - 1, -1, -1):
                if kept[index][0] == name:
                    del kept[index]
                    break
        return [(k, v) for k, v in kept if k != REPLAYED_FROM_HEADER]


@dataclass(frozen=True, slots=True)
class RejectedEmail:
    """What a `notification` dead letter says: which e-mail of which order step was refused."""

    order_id: str
    state: OrderState
    email: OutgoingEmail
    subject: str


def rejected_email(record: DeadLetter) -> RejectedEmail:
    """Read the e-mail a notification dead letter carries (the exact bytes that were refused)."""
    if record.kind != KIND_NOTIFICATION:
        raise DeadLetterError(f"{record.position} is a {record.kind!r} dead letter, not an e-mail")
    if not record.value:
        raise DeadLetterError(f"{record.position} carries no e-mail")
    headers = BytesHeaderParser(policy=compat32).parsebytes(record.value)
    order_id = str(headers.get("X-Pedidos-Order-Id", "")).strip()
    slug = str(headers.get("X-Pedidos-State", "")).strip()
    recipient = parseaddr(str(headers.get("To", "")))[1]
    sender = parseaddr(str(headers.get("From", "")))[1]
    state = _STATES_BY_SLUG.get(slug)
    if not order_id or state is None or "@" not in recipient or "@" not in sender:
        raise DeadLetterError(
            f"{record.position}: the e-mail lacks X-Pedidos-Order-Id, X-Pedidos-State, To or From"
        )
    return RejectedEmail(
        order_id=order_id,
        state=state,
        email=OutgoingEmail(
            sender=sender,
            recipient=recipient,
            message_id=str(headers.get("Message-ID", "")).strip(),
            data=record.value,
        ),
        subject=str(make_header(decode_header(str(headers.get("Subject", ""))))),
    )


@dataclass(frozen=True, slots=True)
class Filters:
    """Which dead letters a command works on; every given filter must match."""

    kind: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    order_id: str | None = None

    def matches(self, record: DeadLetter) -> bool:
        if self.kind is not None and record.kind != self.kind:
            return False
        if self.reason is not None and self.reason.casefold() not in record.reason.casefold():
            return False
        if self.since is not None or self.until is not None:
            if record.timestamp is None:
                return False
            if self.since is not None and record.timestamp < self.since:
                return False
            if self.until is not None and record.timestamp >= self.until:
                return False
        return self.order_id is None or record.order_id == self.order_id


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (`2026-12-01T14:00`, `…Z`, `…+01:00`); without an offset it is UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 time, e.g. 2026-12-01T14:00:00Z") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def reason_group(reason: str) -> str:
    """The reason with what differs per record (ids, addresses, offsets) masked, for counting."""
    masked = _UUID.sub("<id>", reason)
    masked = _EMAIL.sub("<e-mail>", masked)
    return _OFFSET.sub(lambda m: "<n> bytes" if "bytes" in m.group() else "/<n>/<n>", masked)


@dataclass(frozen=True, slots=True)
class SummaryRow:
    kind: str
    reason: str
    count: int
    first: datetime | None
    last: datetime | None


def summarise(records: Iterable[DeadLetter]) -> list[SummaryRow]:
    """Counts per (kind, reason group), most frequent first, with the first and last time."""
    counts: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], datetime] = {}
    last: dict[tuple[str, str], datetime] = {}
    for record in records:
        group = (record.kind, reason_group(record.reason))
        counts[group] += 1
        if record.timestamp is not None:
            if group not in first or record.timestamp < first[group]:
                first[group] = record.timestamp
            if group not in last or record.timestamp > last[group]:
                last[group] = record.timestamp
    return [
        SummaryRow(kind, reason, count, first.get((kind, reason)), last.get((kind, reason)))
        for (kind, reason), count in sorted(counts.items(), key=lambda i: (-i[1], i[0]))
    ]


def _text(value: bytes | None) -> tuple[str | None, bool]:
    """(text, was_binary): UTF-8 as is, anything else as base64."""
    if value is None:
        return None, False
    try:
        return value.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), True


def iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None


def as_json(record: DeadLetter) -> dict[str, Any]:
    """Everything about a dead letter, JSON-ready: binary keys, values and headers as base64."""
    value, value_binary = _text(record.value)
    key, key_binary = _text(record.key)
    headers = []
    for name, raw in record.headers:
        text, binary = _text(raw)
        headers.append({"name": name, "value": text, **({"base64": True} if binary else {})})
    return {
        "dlq": record.position,
        "timestamp": iso(record.timestamp),
        "kind": record.kind,
        "reason": record.reason,
        "source": str(record.source) if record.source else None,
        "key": key,
        **({"key_base64": True} if key_binary else {}),
        "headers": headers,
        "value": value,
        **({"value_base64": True} if value_binary else {}),
    }


def describe(record: DeadLetter, value_chars: int = 400) -> str:
    """A readable block: where it is, kind, reason, source, every header, the value or e-mail."""
    lines = [
        f"{record.position}  {iso(record.timestamp) or '-'}  kind={record.kind}  "
        f"key={record.order_id or '-'}",
        f"  reason: {record.reason or '-'}",
    ]
    if record.source:
        lines.append(f"  source: {record.source}")
    lines.append("  headers:")
    for name, raw in record.headers:
        text, binary = _text(raw)
        lines.append(f"    {name}: {text if text is not None else '(null)'}")
        if binary:
            lines[-1] += " (base64)"
    if record.kind == KIND_NOTIFICATION:
        try:
            email = rejected_email(record)
            lines.append(
                f"  e-mail: to={email.email.recipient} state={email.state.value} "
                f"subject={email.subject!r} message-id={email.email.message_id}"
            )
        except DeadLetterError as exc:
            lines.append(f"  e-mail: unreadable ({exc})")
    else:
        text, binary = _text(record.value)
        if text is None:
            lines.append("  value: (null)")
        else:
            shown = text if len(text) <= value_chars else text[:value_chars] + f"… ({len(text)})"
            lines.append(f"  value{' (base64)' if binary else ''}: {shown}")
    return "\n".join(lines)
