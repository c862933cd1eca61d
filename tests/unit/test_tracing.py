"""Traces, with the SDK's in-memory exporter: one trace per order from the intake's send span
through the five process spans, each linked to the record that triggered it, with the e-mail,
ledger and index children; the shared bulk in a trace of its own, linked both ways; `trace_id`
in the documents and the e-mail. And with tracing off: no span, header or field at all.

The consumer is wired as consumer/app.py wires it, with the real SmtpMailer (fake connections),
the real OrderSearchIndex (a fake client) and a publisher that makes its spans as
KafkaPublisher does, records coming back through an in-memory source as through Kafka.
"""

from __future__ import annotations

import asyncio
import random
import smtplib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_trace_id

from consumer.admission import Admission
from consumer.assignments import Assignments
from consumer.dead_letters import DeadLetters
from consumer.loop import ConsumerLoop
from consumer.scheduling import StepScheduler
from devkit.orders import make_details, order_request
from pedidos.adapters.elasticsearch import search_index
from pedidos.adapters.elasticsearch.search_index import OrderSearchIndex
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.kafka import messaging_spans
from pedidos.adapters.smtp_mailer import SmtpMailer, SmtpSettings
from pedidos.domain.order import Order
from pedidos.domain.states import ALL_STATES
from pedidos.ports import OutgoingEmail, PermanentMailError
from pedidos.runtime import tracing
from pedidos.runtime.retry import Backoff
from pedidos.services.intake import OrderIdSecrets, OrderIntake
from pedidos.services.mail_outage import MailOutage
from pedidos.services.order_walk import OrderWalk, StageDelays
from pedidos.services.tracking import OrderTracker, StateFanout
from pedidos.v1 import orders_pb2
from pedidos.wire.records import ORDER_SCHEMA, encode_order_accepted, header_value, headers_for
from producer.servicer import OrderServicer
from tests.unit.fakes import (
    T0,
    FakeClock,
    FakeOrderLookup,
    FakePublisher,
    FakeRecordSource,
    FakeSmtpConnection,
)
from tests.unit.test_producer_servicer import FakeContext

ORDERS, STATES, DLQ, GROUP = "Pedidos", "Pedidos.estados", "Pedidos.dlq", "pedidos-consumer"
FAST = Backoff(initial_s=0.001, max_s=0.002)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider.get_tracer(tracing.TRACER_NAME))
    yield exporter
    tracing.uninstall()


# -- fakes: the adapters' I/O, not their span code ---------------------------------------------


class TracedPublisher(FakePublisher):
    """Acknowledges at once, with the span and headers KafkaPublisher gives a record."""

    def __init__(self, feed: FakeRecordSource) -> None:
        super().__init__(feed=feed)
        self.offsets: dict[tuple[str, int], int] = {}

    def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        span, sent = messaging_spans.start_send(topic, key, headers, partition)
        future = super().publish(topic, key, value, list(sent), partition)
        at = (topic, partition or 0)
        self.offsets[at] = self.offsets.get(at, -1) + 1
        if span is not None:
            messaging_spans.delivered(span, partition or 0, self.offsets[at])
        return future


class FakeSearchClient:
    """Every bulk item is created; no event document exists yet."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []

    async def bulk(self, body: bytes, refresh: bool, filter_path: str) -> dict[str, Any]:
        self.documents += [orjson.loads(line) for line in body.splitlines()[1::2]]
        return {"errors": False}

    async def mget(self, index: str, ids: list[str]) -> dict[str, Any]:
        return {"docs": [{"_id": i, "found": False} for i in ids]}

    async def close(self) -> None:
        pass


class FakeConnection(FakeSmtpConnection):
    def __init__(self, sent: list[bytes], refuse: bool) -> None:
        super().__init__()
        self.sent, self.refuse = sent, refuse

    def has_extn(self, opt: str) -> bool:
        return opt == "8bitmime"

    def deliver(self, recipient: str, data: bytes) -> None:
        if self.refuse:
            raise smtplib.SMTPRecipientsRefused({recipient: (550, b"5.1.1 no such user")})
        self.sent.append(data)


def mailer(monkeypatch: pytest.MonkeyPatch, sent: list[bytes], refuse: bool = False) -> SmtpMailer:
    smtp = SmtpMailer(SmtpSettings("smtp.example", 2525, connections=2))
    monkeypatch.setattr(smtp, "_connect", lambda: FakeConnection(sent, refuse))
    return smtp


async def walk_one_order(smtp: SmtpMailer, client: FakeSearchClient) -> str:
    """One order through all five states, the way consumer/app.py wires the consumer;
    returns its id. The order record is published inside a `CreateOrder` span, as the
    producer does inside the gRPC server span."""
    clock = FakeClock()
    source = FakeRecordSource([ORDERS, STATES])
    publisher = TracedPublisher(source)
    index = OrderSearchIndex(client, "events", "orders")  # type: ignore[arg-type]
    outage = MailOutage()
    dead_letters = DeadLetters(publisher, DLQ, FAST)
    walk = OrderWalk(
        mailer=smtp,
        index=index,
        publisher=publisher,
        renderer=EmailRenderer("Tienda <ventas@tienda.cl>"),
        states_topic=STATES,
        delays=StageDelays(1.0, 2.0, random.Random(7)),
        dead_letter=dead_letters.for_walk,
        backoff=FAST,
        clock=clock,
        mail_outage=outage,
    )
    assignments = Assignments()
    admission = Admission(ORDERS, None, outage)
    scheduler = StepScheduler(
        walk, assignments, admission, dead_letters, clock=clock, sleep=clock.sleep, group=GROUP
    )
    loop = ConsumerLoop(source, scheduler, assignments, admission, max_in_flight=100)
    order_id = "00000000-0000-4000-8000-000000000001"
    order = Order(order_id, make_details(customer_email="cliente@example.cl"), T0)
    with tracing.tracer().start_as_current_span("CreateOrder", kind=SpanKind.SERVER):
        publisher.publish(
            ORDERS, order_id, encode_order_accepted(order), headers_for(ORDER_SCHEMA, "corr-1")
        )

    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop, grace_s=1.0))
    for _ in range(1000):
        if source.started:
            break
        await asyncio.sleep(0.001)
    await source.assign([(ORDERS, 0), (STATES, 0)])
    for _ in range(3000):
        if len(publisher.on(STATES)) == len(ALL_STATES) and not source.queued:
            break
        await asyncio.sleep(0.001)
    stop.set()
    await asyncio.wait_for(task, 5)
    await index.close()
    smtp.close()
    return order_id


def attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def by_name(found: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def children(found: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in found if s.parent is not None and parent_id(s) == parent.context.span_id]


# -- tracing on ------------------------------------------------------------------------------


def test_one_trace_per_order_with_five_linked_process_spans_and_their_children(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[bytes] = []
    client = FakeSearchClient()
    order_id = asyncio.run(walk_one_order(mailer(monkeypatch, sent), client))
    found = list(spans.get_finished_spans())
    [root] = by_name(found, "CreateOrder")
    trace_id = root.context.trace_id
    [send] = by_name(found, "send Pedidos")
    assert send.kind is SpanKind.PRODUCER
    assert parent_id(send) == root.context.span_id
    assert dict(attrs(send)) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": ORDERS,
        "messaging.kafka.message.key": order_id,
        "messaging.message.conversation_id": "corr-1",
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 0,
    }

    processes = sorted(
        by_name(found, "process Pedidos") + by_name(found, "process Pedidos.estados"),
        key=lambda s: s.start_time or 0,
    )
    assert [attrs(s)["pedidos.order.state"] for s in processes] == [s.value for s in ALL_STATES]
    trigger = send
    for process in processes:
        assert process.kind is SpanKind.CONSUMER
        assert process.context.trace_id == trace_id  # one trace per order
        # A child of the send span of the record that triggered it, and linked to it.
        assert parent_id(process) == trigger.context.span_id
        assert [link.context.span_id for link in process.links] == [trigger.context.span_id]
        attributes = attrs(process)
        assert attributes["messaging.system"] == "kafka"
        assert attributes["messaging.operation.type"] == "process"
        assert (
            attributes["messaging.destination.name"] == attrs(trigger)["messaging.destination.name"]
        )
        assert attributes["messaging.consumer.group.name"] == GROUP
        assert attributes["messaging.destination.partition.id"] == "0"
        assert attributes["messaging.kafka.offset"] == attrs(trigger)["messaging.kafka.offset"]
        assert attributes["messaging.kafka.message.key"] == order_id
        assert attributes["messaging.message.conversation_id"] == "corr-1"
        names = sorted(s.name for s in children(found, process))
        # The ledger is read before the first step only: the consumer published the later
        # steps' triggers itself, under the assignment it reads them under.
        ledger = ["ledger lookup"] if process is processes[0] else []
        assert names == sorted(
            ["index event", "index order", *ledger, "send Pedidos.estados", "smtp send"]
        )
        [smtp] = by_name(children(found, process), "smtp send")
        assert smtp.kind is SpanKind.CLIENT
        assert attrs(smtp)["server.address"] == "smtp.example"
        assert attrs(smtp)["server.port"] == 2525
        [trigger] = by_name(children(found, process), "send Pedidos.estados")

    # The shared requests: traces of their own, linked both ways with each step's span.
    for item_name, batch_name in (("index event", "index bulk"), ("ledger lookup", "ledger mget")):
        batches = {s.context.span_id: s for s in by_name(found, batch_name)}
        assert batches
        assert all(b.parent is None for b in batches.values())
        for item in by_name(found, item_name):
            [link] = item.links
            batch = batches[link.context.span_id]
            assert batch.context.trace_id != trace_id
            assert item.context.span_id in {x.context.span_id for x in batch.links}

    # Where the trace id shows: every document, every e-mail.
    hex_id = format_trace_id(trace_id)
    assert client.documents
    assert {d["trace_id"] for d in client.documents} == {hex_id}
    assert len(sent) == len(ALL_STATES)
    assert all(f"X-Trace-Id: {hex_id}\r\n".encode() in data for data in sent)


def test_a_refused_e_mail_s_span_names_the_error_type(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp = mailer(monkeypatch, [], refuse=True)

    async def send() -> None:
        with tracing.tracer().start_as_current_span("step"):
            await smtp.send_async(OutgoingEmail("a@b.cl", "x@y.cl", "<id@b.cl>", b"x\r\n"))

    with pytest.raises(PermanentMailError):
        asyncio.run(send())
    smtp.close()
    [span] = by_name(list(spans.get_finished_spans()), "smtp send")
    assert attrs(span)["error.type"] == "PermanentMailError"
    assert not span.status.is_ok


def test_the_send_span_replaces_trace_headers_of_an_earlier_life(
    spans: InMemorySpanExporter,
) -> None:
    old = [
        ("correlation-id", b"c"),
        ("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"),
    ]
    span, headers = messaging_spans.start_send(DLQ, "k", old, None)
    assert span is not None
    traceparents = [v for k, v in headers if k == "traceparent"]
    assert len(traceparents) == 1
    assert traceparents != [old[1][1]]
    assert format_trace_id(span.get_span_context().trace_id).encode() in traceparents[0]
    messaging_spans.failed(span, "refused", "produce_refused")
    [ended] = spans.get_finished_spans()
    assert attrs(ended)["error.type"] == "produce_refused"
    assert "messaging.destination.partition.id" not in attrs(ended)


# -- tracing off -----------------------------------------------------------------------------


def test_off_there_is_no_span_header_or_trace_field(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not tracing.enabled()
    sent: list[bytes] = []
    client = FakeSearchClient()
    headers = headers_for(ORDER_SCHEMA, "c")
    span, same = messaging_spans.start_send(ORDERS, "k", headers, None)
    assert span is None
    assert same is headers
    asyncio.run(walk_one_order(mailer(monkeypatch, sent), client))
    assert len(sent) == len(ALL_STATES)
    assert not any(b"X-Trace-Id" in data for data in sent)
    assert client.documents
    assert not any("trace_id" in d for d in client.documents)


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_only_an_exporter_asked_for_turns_tracing_on(environ: dict[str, str], wanted: bool) -> None:
    assert tracing.wanted(environ) is wanted


def test_no_trace_id_outside_a_sampled_trace(spans: InMemorySpanExporter) -> None:
    assert tracing.current_trace_id() is None
    with tracing.tracer().start_as_current_span("x") as span:
        assert tracing.current_trace_id() == format_trace_id(span.get_span_context().trace_id)


def test_otel_lines_of_dotenv_reach_the_sdk_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318\n"
        "OTEL_SERVICE_NAME=from-dotenv\n"  # pragma: allowlist secret (not one)
        "OTEL_TRACES_SAMPLER=\n"
        "SMTP_HOST=mail\n"
    )
    environ = {"OTEL_SERVICE_NAME": "from-environment"}
    tracing.adopt_dotenv(str(dotenv), environ)
    # Empty means unset, as for the settings; the settings read their own lines themselves.
    assert environ == {
        "OTEL_SERVICE_NAME": "from-environment",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
    }


def test_each_order_of_a_batch_has_a_trace_of_its_own_linked_to_the_call(
    spans: InMemorySpanExporter,
) -> None:
    source = FakeRecordSource([ORDERS])
    publisher = TracedPublisher(source)
    fanout = StateFanout()
    servicer = OrderServicer(
        OrderIntake(publisher, ORDERS, remembered_keys=10, secrets=OrderIdSecrets(b"s" * 32)),
        0.2,
        OrderTracker(FakeOrderLookup(), fanout),
        fanout,
    )
    batch = orders_pb2.CreateOrderBatchRequest(
        orders=[order_request(f"k{n}", customer_email=f"c{n}@example.cl") for n in range(3)]
    )

    async def call() -> None:
        with tracing.tracer().start_as_current_span("CreateOrderBatch", kind=SpanKind.SERVER):
            await servicer.CreateOrderBatch(batch, FakeContext())  # type: ignore[arg-type]

    asyncio.run(call())
    found = list(spans.get_finished_spans())
    [rpc] = by_name(found, "CreateOrderBatch")
    intakes = by_name(found, "intake order from batch")
    sends = by_name(found, "send Pedidos")
    assert len(intakes) == len(sends) == 3
    assert len({s.context.trace_id for s in intakes} | {rpc.context.trace_id}) == 4
    for intake in intakes:
        assert intake.parent is None
        assert [link.context.span_id for link in intake.links] == [rpc.context.span_id]
        [send] = children(found, intake)
        assert send in sends
    # The records carry each order's own trace downstream.
    traceparents = {header_value(headers, "traceparent") for *_, headers in publisher.records}
    assert {tp.split("-")[1] for tp in traceparents if tp} == {
        format_trace_id(i.context.trace_id) for i in intakes
    }


def test_off_the_elasticsearch_client_opens_no_span_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Recorded first, so the test leaves the variable as it found it.
    monkeypatch.setenv(tracing.ES_CLIENT_SPANS, "unset")
    monkeypatch.delenv(tracing.ES_CLIENT_SPANS)
    assert not tracing.configure("consumer", {})
    client = search_index.connect("http://127.0.0.1:9")
    assert not client._otel.enabled
    asyncio.run(client.close())
