"""Replays dead letters: records go back to their source topic, refused e-mails are sent again.

Both are idempotent through the consumer's ledger (the event document `{order_id}:{state}`):
a replayed record whose steps are already recorded sends no e-mail again, and a refused e-mail
is sent only while its ledger entry still says `rejected`, then the entry says `sent`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer
from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, Elasticsearch, NotFoundError

from admin.dlq_records import (
    REPLAYED_FROM_HEADER,
    DeadLetter,
    DeadLetterError,
    rejected_email,
)
from pedidos.adapters.elasticsearch.search_index import event_id
from pedidos.adapters.kafka.publisher import stored_offset
from pedidos.domain.states import OrderState
from pedidos.ports import OutgoingEmail, PermanentMailError, TransientMailError
from pedidos.services.order_walk import EMAIL_REJECTED, EMAIL_SENT

REPLAYED = "replayed"
SENT = "sent"
SKIPPED = "skipped"
PENDING = "pending"
FAILED = "failed"
# What a dry run reports instead of doing it.
WOULD_REPLAY = "would replay"
WOULD_SEND = "would send"


@dataclass(frozen=True, slots=True)
class Outcome:
    record: DeadLetter
    action: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.action not in (FAILED, PENDING)


class RecordReplayer:
    """Sends `record` dead letters back to the topic and partition they came from."""

    def __init__(self, producer: Producer | None, dry_run: bool) -> None:
        self._producer = producer
        self._dry_run = dry_run
        self._delivered: list[Outcome] = []
        self._sent: list[DeadLetter] = []

    def replay(self, record: DeadLetter) -> Outcome | None:
        """An outcome now (dry run, or nothing to replay to), else None: see `finish`."""
        source = record.source
        if source is None:
            return Outcome(record, FAILED, "no pedidos-source header: its topic is unknown")
        target = f"{source.topic}[{source.partition}]"
        if self._dry_run or self._producer is None:
            return Outcome(record, WOULD_REPLAY, f"to {target}")
        headers: list[tuple[str, str | bytes | None]] = [
            *record.original_headers(),
            (REPLAYED_FROM_HEADER, record.position.encode()),
        ]

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                self._delivered.append(Outcome(record, FAILED, f"to {target}: {error.str()}"))
            elif stored_offset(message) is None:
                # librdkafka's implicit ack (see KafkaPublisher): not proof the record is stored.
                detail = f"to {target}: acknowledged without an offset, not stored for sure"
                self._delivered.append(Outcome(record, FAILED, detail))
            else:
                where = f"{message.topic()}/{message.partition()}/{message.offset()}"
                self._delivered.append(Outcome(record, REPLAYED, f"to {where}"))

        self._producer.produce(
            source.topic,
            key=record.key,
            value=record.value,
            headers=headers,
            partition=source.partition,
            on_delivery=delivered,
        )
        self._sent.append(record)
        self._producer.poll(0)
        return None

    def finish(self, timeout_s: float) -> list[Outcome]:
        """Wait for the broker's acknowledgements; a record not acknowledged is a failure."""
        if self._producer is not None:
            self._producer.flush(timeout_s)
        reported = {outcome.record.position for outcome in self._delivered}
        unanswered = [
            Outcome(record, FAILED, f"not acknowledged within {timeout_s:g}s")
            for record in self._sent
            if record.position not in reported
        ]
        return self._delivered + unanswered


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    order_id: str
    state: OrderState
    email_status: str
    seq_no: int
    primary_term: int


class Ledger:
    """The consumer's notification ledger: the event document of each (order, state)."""

    def __init__(self, client: Elasticsearch, events_index: str) -> None:
        self._client = client
        self._index = events_index

    def entry(self, order_id: str, state: OrderState) -> LedgerEntry | None:
        try:
            found = self._client.get(index=self._index, id=event_id(order_id, state.value))
        except NotFoundError:
            return None
        return LedgerEntry(
            order_id,
            state,
            str(found["_source"].get("email_status", "")),
            int(found["_seq_no"]),
            int(found["_primary_term"]),
        )

    def mark_sent(self, entry: LedgerEntry) -> bool:
        """Record the e-mail as sent; False if the entry changed since it was read."""
        try:
            self._client.update(
                index=self._index,
                id=event_id(entry.order_id, entry.state.value),
                doc={"email_status": EMAIL_SENT, "email_error": None},
                if_seq_no=entry.seq_no,
                if_primary_term=entry.primary_term,
                refresh=True,
            )
        except ConflictError:
            return False
        return True


class SyncMailer(Protocol):
    def send(self, message: OutgoingEmail) -> None: ...


class StepLedger(Protocol):
    def entry(self, order_id: str, state: OrderState) -> LedgerEntry | None: ...
    def mark_sent(self, entry: LedgerEntry) -> bool: ...


class NotificationReplayer:
    """Sends a refused e-mail again if, and only if, the ledger still says `rejected`."""

    def __init__(
        self,
        mailer: SyncMailer | None,
        ledger: StepLedger,
        dry_run: bool,
        attempts: int = 4,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self._mailer = mailer
        self._ledger = ledger
        self._dry_run = dry_run
        self._attempts = attempts
        self._sleep = sleep
        self._seen: set[tuple[str, OrderState]] = set()

    def replay(self, record: DeadLetter) -> Outcome:
        try:
            rejected = rejected_email(record)
        except DeadLetterError as exc:
            return Outcome(record, FAILED, str(exc))
        step = (rejected.order_id, rejected.state)
        what = f"{rejected.state.value} e-mail to {rejected.email.recipient}"
        if step in self._seen:
            return Outcome(record, SKIPPED, f"{what}: handled earlier in this run")
        self._seen.add(step)
        try:
            return self._replay(record, rejected.email, step, what)
        except (ApiError, TransportError) as exc:
            return Outcome(record, FAILED, f"{what}: the ledger (Elasticsearch) failed: {exc}")

    def _replay(
        self, record: DeadLetter, email: OutgoingEmail, step: tuple[str, OrderState], what: str
    ) -> Outcome:
        entry = self._ledger.entry(*step)
        if entry is None:
            return Outcome(record, PENDING, f"{what}: not in the ledger yet; replay it later")
        if entry.email_status == EMAIL_SENT:
            return Outcome(record, SKIPPED, f"{what}: already sent (ledger)")
        if entry.email_status != EMAIL_REJECTED:
            return Outcome(record, FAILED, f"{what}: unexpected ledger status {entry.email_status}")
        if self._dry_run or self._mailer is None:
            return Outcome(record, WOULD_SEND, what)
        problem = self._send(email)
        if problem is not None:
            return Outcome(record, FAILED, f"{what}: {problem}")
        if not self._ledger.mark_sent(entry):
            return Outcome(record, SENT, f"{what}; the ledger changed meanwhile (another replay?)")
        return Outcome(record, SENT, what)

    def _send(self, email: OutgoingEmail) -> str | None:
        """None when the server accepted it, else why not (after retrying transient errors)."""
        delay = 0.5
        for attempt in range(1, self._attempts + 1):
            try:
                self._mailer.send(email)  # type: ignore[union-attr]
                return None
            except PermanentMailError as exc:
                return f"refused again: {exc}"
            except TransientMailError as exc:
                if attempt == self._attempts:
                    return f"not sent after {attempt} attempts: {exc}"
                self._sleep(delay)
                delay *= 2
        return "not sent"
