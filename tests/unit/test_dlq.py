"""Dead letters: reading the consumer's headers, filters, the summary, and the e-mail replay rules.

The ledger and the mailer are in-memory fakes here (the real ones run in
tests/e2e/test_dlq_replay.py); these tests pin the decisions the replay makes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from confluent_kafka import Producer
from elastic_transport import ConnectionError as ElasticsearchUnreachable

from admin.dlq_records import (
    DeadLetter,
    DeadLetterError,
    Filters,
    SourceRef,
    as_json,
    describe,
    parse_time,
    reason_group,
    rejected_email,
    summarise,
)
from admin.dlq_replay import (
    FAILED,
    PENDING,
    REPLAYED,
    SENT,
    SKIPPED,
    LedgerEntry,
    NotificationReplayer,
    RecordReplayer,
)
from pedidos.adapters.email.render import EmailRenderer
from pedidos.domain.order import Order, OrderDetails
from pedidos.domain.states import OrderState
from pedidos.ports import OutgoingEmail, PermanentMailError, TransientMailError
from tests.unit.fakes import DeliveredMessage, FakeMailer

T0 = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
ORDER_ID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"


def dead_letter(
    kind: str = "record",
    reason: str = "PoisonRecord: not JSON",
    *,
    key: bytes | None = ORDER_ID.encode(),
    value: bytes | None = b"{}",
    at: datetime | None = T0,
    source: str = "Pedidos/2/41",
    own_headers: list[tuple[str, bytes | None]] | None = None,
    offset: int = 7,
) -> DeadLetter:
    return DeadLetter(
        topic="Pedidos.dlq",
        partition=1,
        offset=offset,
        timestamp=at,
        key=key,
        value=value,
        headers=[
            *(own_headers or []),
            ("pedidos-dlq-kind", kind.encode()),
            ("pedidos-error", reason.encode()),
            ("pedidos-source", source.encode()),
        ],
    )


def rendered_email(state: OrderState = OrderState.ENVIADO) -> OutgoingEmail:
    details = OrderDetails.create(
        product_name="Silla ergonómica",
        price_minor=129_990,
        currency="CLP",
        payment_gateway="MERCADO_PAGO",
        card_brand="VISA",
        bank="Banco de Chile",
        shipping_region="Región Metropolitana",
        shipping_address="Calle Pajaritos 300",
        customer_email="nadie@rechazado.example.cl",
    )
    order = Order(order_id=ORDER_ID, details=details, accepted_at=T0)
    return EmailRenderer("Pedidos <pedidos@tienda.test>").render(order, state, T0)


def notification(state: OrderState = OrderState.ENVIADO, offset: int = 7) -> DeadLetter:
    return dead_letter(
        "notification",
        "recipient refused: {'nadie@rechazado.example.cl': (550, b'5.1.1 Mailbox unavailable')}",
        value=rendered_email(state).data,
        source="",
        offset=offset,
    )


def test_source_is_topic_partition_offset_even_with_dots_and_dashes_in_the_topic() -> None:
    assert SourceRef.parse("Pedidos.estados-ab12/2/41") == SourceRef("Pedidos.estados-ab12", 2, 41)
    assert str(SourceRef("Pedidos", 0, 3)) == "Pedidos/0/3"
    for bad in ("", "Pedidos", "Pedidos/x/1", "Pedidos/1/", "/1/2"):
        assert SourceRef.parse(bad) is None, bad


def test_the_consumers_headers_win_over_the_records_own_and_only_they_are_dropped() -> None:
    # A record may bring its own headers, even ones named like the consumer's: they come first.
    record = dead_letter(
        own_headers=[
            ("correlation-id", b"abc"),
            ("pedidos-error", b"set by the sender"),
            ("pedidos-replayed-from", b"Pedidos.dlq/0/1"),
        ]
    )
    assert record.kind == "record"
    assert record.reason == "PoisonRecord: not JSON"
    assert record.source == SourceRef("Pedidos", 2, 41)
    assert record.original_headers() == [
        ("correlation-id", b"abc"),
        ("pedidos-error", b"set by the sender"),
    ]


def test_a_record_without_the_consumers_headers_is_of_unknown_kind() -> None:
    record = DeadLetter("Pedidos.dlq", 0, 0, None, None, b"x", [])
    assert (record.kind, record.reason, record.source) == ("unknown", "", None)


def test_filters_match_kind_reason_time_range_and_order() -> None:
    record = dead_letter(reason="PoisonRecord: Not JSON at all")
    assert Filters().matches(record)
    assert Filters(kind="record").matches(record)
    assert not Filters(kind="notification").matches(record)
    assert Filters(reason="not json").matches(record)
    assert not Filters(reason="schema").matches(record)
    assert Filters(since=T0, until=T0 + timedelta(seconds=1)).matches(record)
    assert not Filters(since=T0 + timedelta(milliseconds=1)).matches(record)
    assert not Filters(until=T0).matches(record)  # until is exclusive
    assert Filters(order_id=ORDER_ID).matches(record)
    assert not Filters(order_id="other").matches(record)
    assert not Filters(kind="record", reason="schema").matches(record)
    # A record without a timestamp cannot be placed in a time range.
    assert not Filters(since=T0).matches(dead_letter(at=None))


def test_times_are_iso_8601_and_utc_unless_they_say_otherwise() -> None:
    assert parse_time("2026-12-01T14:00:00Z") == T0
    assert parse_time("2026-12-01T14:00") == T0
    assert parse_time("2026-12-01T15:00:00+01:00") == T0
    with pytest.raises(ValueError, match="'yesterday' is not an ISO-8601 time"):
        parse_time("yesterday")


def test_reasons_are_grouped_without_what_differs_per_record() -> None:
    first = "PermanentIndexError: order 1b4e28ba-2fa1-41d2-883f-0016d3cca427: failed to parse"
    second = "PermanentIndexError: order 9c4e28ba-2fa1-41d2-883f-0016d3cca427: failed to parse"
    assert (
        reason_group(first)
        == reason_group(second)
        == ("PermanentIndexError: order <id>: failed to parse")
    )
    assert reason_group("recipient refused: {'a@b.cl': (550, b'x')}") == (
        "recipient refused: {'<e-mail>': (550, b'x')}"
    )
    assert reason_group("PoisonRecord: record of 70001 bytes exceeds 65536") == (
        "PoisonRecord: record of <n> bytes exceeds 65536"
    )


def test_the_summary_counts_by_kind_and_reason_most_frequent_first() -> None:
    records = [
        dead_letter(reason="PoisonRecord: not JSON", at=T0 + timedelta(minutes=2)),
        notification(),
        dead_letter(reason="PoisonRecord: not JSON", at=T0),
        notification(),
        notification(),
    ]
    rows = summarise(records)
    assert [(r.kind, r.count) for r in rows] == [("notification", 3), ("record", 2)]
    assert "<e-mail>" in rows[0].reason
    assert (rows[1].first, rows[1].last) == (T0, T0 + timedelta(minutes=2))
    assert summarise([]) == []


def test_a_refused_email_is_read_back_from_the_dead_letter() -> None:
    email = rendered_email(OrderState.PREPARACION)
    rejected = rejected_email(notification(OrderState.PREPARACION))
    assert rejected.order_id == ORDER_ID
    assert rejected.state is OrderState.PREPARACION
    assert rejected.email == email  # the exact bytes, sender and recipient
    assert rejected.subject == "Tu pedido está en preparación: Silla ergonómica"


def test_a_dead_letter_that_is_not_a_readable_email_is_a_clear_error() -> None:
    with pytest.raises(DeadLetterError, match="is a 'record' dead letter"):
        rejected_email(dead_letter())
    with pytest.raises(DeadLetterError, match="lacks X-Pedidos-Order-Id"):
        rejected_email(dead_letter("notification", value=b"Subject: hola\r\n\r\nbody"))
    with pytest.raises(DeadLetterError, match="carries no e-mail"):
        rejected_email(dead_letter("notification", value=None))


def test_json_output_keeps_binary_values_and_every_header() -> None:
    record = dead_letter(value=b"\x00\xff", own_headers=[("raw", b"\xfe"), ("none", None)])
    shown = as_json(record)
    assert json.loads(json.dumps(shown)) == shown
    assert shown["value"] == "AP8="
    assert shown["value_base64"] is True
    assert shown["headers"][:2] == [
        {"name": "raw", "value": "/g==", "base64": True},
        {"name": "none", "value": None},
    ]
    assert shown["source"] == "Pedidos/2/41"
    assert (shown["dlq"], shown["timestamp"]) == ("Pedidos.dlq/1/7", "2026-12-01T14:00:00.000Z")


def test_the_readable_form_names_the_email_of_a_notification() -> None:
    text = describe(notification())
    assert "kind=notification" in text
    assert "to=nadie@rechazado.example.cl state=Enviado" in text
    assert "pedidos-error: recipient refused" in text
    long_value = describe(dead_letter(value=b"x" * 1000), value_chars=10)
    assert "value: xxxxxxxxxx… (1000)" in long_value


class FakeLedger:
    def __init__(self, statuses: dict[tuple[str, OrderState], str]) -> None:
        self.statuses = statuses
        self.marked: list[tuple[str, OrderState]] = []

    def entry(self, order_id: str, state: OrderState) -> LedgerEntry | None:
        status = self.statuses.get((order_id, state))
        return None if status is None else LedgerEntry(order_id, state, status, 3, 1)

    def mark_sent(self, entry: LedgerEntry) -> bool:
        self.statuses[(entry.order_id, entry.state)] = "sent"
        self.marked.append((entry.order_id, entry.state))
        return True


def replayer(mailer: FakeMailer, ledger: FakeLedger, dry_run: bool = False) -> NotificationReplayer:
    return NotificationReplayer(mailer, ledger, dry_run, attempts=3, sleep=lambda _: None)


def test_an_email_is_sent_only_while_the_ledger_says_rejected_then_it_says_sent() -> None:
    step = (ORDER_ID, OrderState.ENVIADO)
    ledger, mailer = FakeLedger({step: "rejected"}), FakeMailer()
    assert replayer(mailer, ledger).replay(notification()).action == SENT
    assert ledger.statuses[step] == "sent"
    assert len(mailer.sent) == 1
    # A second replay (a new run) finds the ledger saying sent.
    assert replayer(mailer, ledger).replay(notification()).action == SKIPPED
    assert len(mailer.sent) == 1


def test_the_same_email_dead_lettered_twice_is_handled_once_per_run() -> None:
    # A redone step can dead-letter the same e-mail twice: a dry run counts it once, and one
    # refused again is not tried a second time in the same run.
    step = (ORDER_ID, OrderState.ENVIADO)
    dry = replayer(FakeMailer(), FakeLedger({step: "rejected"}), dry_run=True)
    outcomes = [dry.replay(notification(offset=1)), dry.replay(notification(offset=2))]
    assert [o.action for o in outcomes] == ["would send", SKIPPED]

    mailer = FakeMailer(PermanentMailError("550 no"), PermanentMailError("550 no"))
    run = replayer(mailer, FakeLedger({step: "rejected"}))
    outcomes = [run.replay(notification(offset=1)), run.replay(notification(offset=2))]
    assert [o.action for o in outcomes] == [FAILED, SKIPPED]
    assert len(mailer.failures) == 1  # the second refusal was never asked for


def test_a_dry_run_sends_nothing_and_records_nothing() -> None:
    ledger = FakeLedger({(ORDER_ID, OrderState.ENVIADO): "rejected"})
    mailer = FakeMailer()
    outcome = replayer(mailer, ledger, dry_run=True).replay(notification())
    assert outcome.action == "would send"
    assert (mailer.sent, ledger.marked) == ([], [])


def test_a_step_not_yet_in_the_ledger_waits() -> None:
    mailer = FakeMailer()
    outcome = replayer(mailer, FakeLedger({})).replay(notification())
    assert (outcome.action, outcome.ok) == (PENDING, False)
    assert mailer.sent == []


def test_transient_failures_are_retried_and_a_refusal_leaves_the_ledger_alone() -> None:
    step = (ORDER_ID, OrderState.ENVIADO)
    ledger = FakeLedger({step: "rejected"})
    mailer = FakeMailer(TransientMailError("421 busy"), TransientMailError("421 busy"))
    assert replayer(mailer, ledger).replay(notification()).action == SENT
    assert len(mailer.sent) == 1

    ledger = FakeLedger({step: "rejected"})
    refused = replayer(FakeMailer(PermanentMailError("550 no")), ledger).replay(notification())
    assert (refused.action, refused.ok) == (FAILED, False)
    assert "refused again: 550 no" in refused.detail
    assert ledger.statuses[step] == "rejected"

    down = FakeMailer(*(TransientMailError("connection refused") for _ in range(3)))
    outcome = replayer(down, ledger).replay(notification())
    assert outcome.action == FAILED
    assert "not sent after 3 attempts" in outcome.detail
    assert ledger.statuses[step] == "rejected"


class UnreachableLedger(FakeLedger):
    def entry(self, order_id: str, state: OrderState) -> LedgerEntry | None:
        raise ElasticsearchUnreachable("connection refused")


def test_an_unreachable_ledger_fails_that_email_and_sends_nothing() -> None:
    mailer = FakeMailer()
    outcome = replayer(mailer, UnreachableLedger({})).replay(notification())
    assert (outcome.action, outcome.ok) == (FAILED, False)
    assert "the ledger (Elasticsearch) failed" in outcome.detail
    assert mailer.sent == []


def unreachable_producer(timeout_ms: int) -> Producer:
    # A real librdkafka producer with no broker behind it: nothing is ever acknowledged.
    return Producer(
        {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": timeout_ms, "log_level": 0}
    )


def test_a_record_kafka_does_not_take_is_a_failure() -> None:
    replay = RecordReplayer(unreachable_producer(300), dry_run=False)
    assert replay.replay(dead_letter()) is None
    (outcome,) = replay.finish(timeout_s=10)
    assert (outcome.action, outcome.ok) == (FAILED, False)
    assert "to Pedidos[2]: Local: Message timed out" in outcome.detail


def test_a_record_not_acknowledged_in_time_is_a_failure_too() -> None:
    replay = RecordReplayer(unreachable_producer(60_000), dry_run=False)
    replay.replay(dead_letter())
    (outcome,) = replay.finish(timeout_s=0.2)
    assert (outcome.action, outcome.detail) == (FAILED, "not acknowledged within 0.2s")


class AcknowledgingProducer:
    """Answers each record at once as librdkafka would, with `offset` (scripted: no broker here
    can be made to acknowledge a record implicitly on cue)."""

    def __init__(self, offset: int) -> None:
        self._offset = offset
        self._answers: list[Any] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self._answers.append((kwargs["on_delivery"], topic, kwargs["partition"]))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        for on_delivery, topic, partition in self._answers:
            on_delivery(None, DeliveredMessage(partition, self._offset, topic))
        self._answers.clear()
        return 0


@pytest.mark.parametrize(("offset", "action"), [(41, REPLAYED), (0, REPLAYED), (-1001, FAILED)])
def test_only_an_acknowledgement_with_an_offset_counts_as_replayed(
    offset: int, action: str
) -> None:
    replay = RecordReplayer(cast(Producer, AcknowledgingProducer(offset)), dry_run=False)
    replay.replay(dead_letter())
    (outcome,) = replay.finish(timeout_s=1)
    assert outcome.action == action
    if action == FAILED:
        assert "acknowledged without an offset" in outcome.detail
    else:
        assert outcome.detail == f"to Pedidos/2/{offset}"
