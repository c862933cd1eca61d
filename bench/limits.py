"""The limits of what the services talk to, measured without the services, each with the
services' own code or settings:

- 4 broker limit: raw confluent-kafka produce of the producer's own records, with the
  producer's own configuration (idempotent, acks=all);
- 4b the same by a peer nobody here wrote: Apache Kafka's own `kafka-producer-perf-test`
  (kafka-tools, Java client), same record size and producer settings (lz4, linger 2 ms);
- 5 mail limit: raw smtplib sends of the consumer's rendered e-mails to a sink, on one reused
  connection, the way the consumer's SmtpMailer sends them (its `SmtpConnection`: pipelined
  where the sink offers PIPELINING);
- 5b index limit (beyond the brief's list, to explain the end-to-end figure): the consumer's own
  Elasticsearch writes (OrderSearchIndex: lookup, event insert, order upsert per state) for N
  orders walked state by state, without Kafka or SMTP.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import subprocess
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from bench.checks import delivery_problems, pipeline_problems
from bench.environment import MailSink, PipelineProbe
from bench.figures import Figure, LatencySummary
from bench.options import SCENARIO_TIMEOUT_S
from devkit.apache_kafka import PRODUCER_PERF_MAIN, tool_command
from devkit.orders import accepted_orders, order_records
from devkit.scenario import SENDER
from devkit.topics import topic_size
from pedidos.adapters.elasticsearch import search_index
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.kafka.publisher import producer_config
from pedidos.adapters.smtp_mailer import SmtpConnection, send_to
from pedidos.domain.order import Order, utc_now
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.ports import OutgoingEmail
from pedidos.runtime.config import Settings
from pedidos.wire.records import Headers
from pedidos.wire.search_documents import event_document, order_document


@dataclass
class _Deliveries:
    """Records or e-mails the other side confirmed, refused, and the last refusal."""

    delivered: int = 0
    failed: int = 0
    last_error: str = ""

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.last_error = error.str()

    def problems(self, what: str, expected: int) -> list[str]:
        return delivery_problems(what, expected, self.delivered, self.failed)


def produce_all(
    producer: Producer, topic: str, records: list[tuple[str, bytes, Headers]], deadline: float
) -> _Deliveries:
    deliveries = _Deliveries()
    produce = partial(producer.produce, topic, on_delivery=deliveries)
    for key, value, headers in records:
        while True:
            try:
                produce(key=key.encode(), value=value, headers=list(headers))
                break
            except BufferError:  # local queue full: let deliveries drain it
                producer.poll(0.01)
                if time.monotonic() > deadline:
                    return deliveries
        producer.poll(0)
    producer.flush(max(deadline - time.monotonic(), 0))
    return deliveries


def measure_broker(figure: Figure, settings: Settings, count: int) -> None:
    records = order_records(seed=4, count=count)
    topic = settings.pedidos_topic
    bootstrap = settings.kafka_bootstrap_servers
    producer = Producer(producer_config(bootstrap, "pedidos-bench-raw", SCENARIO_TIMEOUT_S))
    # Untimed: metadata, connection and the idempotent producer id.
    warm = produce_all(producer, topic, records[:1], time.monotonic() + 30)
    started = time.perf_counter()
    deliveries = produce_all(producer, topic, records, time.monotonic() + SCENARIO_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    figure.value = deliveries.delivered / elapsed
    figure.details = {
        "records": count,
        "elapsed_s": round(elapsed, 3),
        "bytes_per_record": round(sum(len(r[1]) for r in records) / max(count, 1)),
    }
    problems = deliveries.problems("records", count) + warm.problems("warm-up records", 1)
    if deliveries.last_error:
        problems.append(f"last delivery error: {deliveries.last_error}")
    figure.refuse(problems)


# "100000 records sent, 81234.5 records/sec (8.12 MB/sec), 12.30 ms avg latency, 200.00 ms max
# latency, 10 ms 50th, 30 ms 95th, 50 ms 99th, 90 ms 99.9th."
_SUMMARY = re.compile(
    r"(?P<sent>\d+) records sent, (?P<rate>[\d.]+) records/sec \([\d.]+ MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


def parse_summary(output: str) -> dict[str, float] | None:
    """The tool's last summary line (it also prints interim ones every 5 s), or None."""
    found = list(_SUMMARY.finditer(output))
    if not found:
        return None
    return {name: float(value) for name, value in found[-1].groupdict().items()}


def _perf_test(
    bootstrap: str, topic: str, count: int, size: int
) -> subprocess.CompletedProcess[str]:
    argv = tool_command(
        PRODUCER_PERF_MAIN,
        *("--topic", topic, "--num-records", str(count), "--record-size", str(size)),
        *("--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}"),
        *("acks=all", "enable.idempotence=true", "linger.ms=2", "compression.type=lz4"),
        "client.id=pedidos-bench-perf-test",
    )
    return subprocess.run(argv, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S)


def measure_perf_test(
    figure: Figure, settings: Settings, count: int, record_size: int, watermarks_exact: bool
) -> None:
    """4b: `count` records of `record_size` bytes by kafka-producer-perf-test."""
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.pedidos_topic
    started = time.perf_counter()
    try:
        done = _perf_test(bootstrap, topic, count, record_size)
    except subprocess.TimeoutExpired:
        figure.refuse([f"kafka-producer-perf-test did not finish in {SCENARIO_TIMEOUT_S:.0f}s"])
        return
    summary = parse_summary(done.stdout)
    if done.returncode != 0 or summary is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        figure.refuse([f"kafka-producer-perf-test exited {done.returncode}: {tail[0]}"])
        return
    figure.value = summary["rate"]
    figure.details = {
        "records": count,
        "record_size": record_size,
        "avg_latency_ms": summary["avg"],
        **{f"{q}_ms": summary[q] for q in ("p50", "p95", "p99")},
        # The JVM's start is in here, not in the rate the tool reports.
        "wall_s": round(time.perf_counter() - started, 1),
    }
    problems = []
    if int(summary["sent"]) != count:
        problems.append(f"the tool sent {int(summary['sent'])} of {count} records")
    if watermarks_exact:
        stored = topic_size(bootstrap, topic, settings.kafka_topic_partitions)
        figure.details["records_on_topic"] = stored
        if stored != count:
            problems.append(f"the topic holds {stored} records, not {count}")
    else:
        figure.notes.append("records on the topic not checked: this broker's end offsets are wrong")
    figure.refuse(problems)


def state_emails(seed: int, orders: int) -> list[OutgoingEmail]:
    """The five e-mails of each order, rendered by the consumer's renderer (and its sender)."""
    renderer = EmailRenderer(SENDER)
    messages = []
    for order in accepted_orders(seed, orders):
        for state in ALL_STATES:
            at = utc_now()
            order.enter(state, at)
            messages.append(renderer.render(order, state, at))
    return messages


def _send_each(
    client: smtplib.SMTP, messages: list[OutgoingEmail]
) -> tuple[_Deliveries, list[float]]:
    sent, latencies = _Deliveries(), []
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S
    for message in messages:
        if time.monotonic() > deadline:
            sent.last_error = f"timed out after {SCENARIO_TIMEOUT_S:.0f}s"
            break
        try:
            began = time.perf_counter()
            send_to(client, message)  # as SmtpMailer sends it (BODY=8BITMIME)
            # Each send alone (one at a time): "one raw SMTP send" of issue #18's limit.
            latencies.append(time.perf_counter() - began)
            sent.delivered += 1
        except smtplib.SMTPException as exc:
            sent.failed += 1
            sent.last_error = str(exc)
    return sent, latencies


def measure_mail(figure: Figure, sink: MailSink, emails: int) -> None:
    messages = state_emails(seed=5, orders=max(emails // 5, 1))
    before = sink.inbox_count()
    # The consumer's own connection class: MAIL, RCPT and DATA in one write where the sink
    # offers PIPELINING (it does), so the limit is a send made as the consumer makes it.
    client = SmtpConnection("127.0.0.1", sink.port, timeout=10)
    try:
        client.ehlo()
        started = time.perf_counter()
        sent, latencies = _send_each(client, messages)
        elapsed = time.perf_counter() - started
    finally:
        try:
            client.quit()
        except smtplib.SMTPException:
            client.close()
    figure.value = sent.delivered / elapsed
    figure.latency = LatencySummary.of_seconds(latencies)
    figure.details = {"emails": len(messages), "elapsed_s": round(elapsed, 3)}
    problems = sent.problems("e-mails", len(messages))
    after = sink.inbox_count()
    if before is not None and after is not None:
        figure.details["inbox_delta"] = grew = after - before
        if grew != sent.delivered:
            problems.append(f"inbox grew by {grew}, {sent.delivered} e-mails were accepted")
    if sent.last_error:
        problems.append(f"last error: {sent.last_error}")
    figure.refuse(problems)


def sent_event(order: Order, state: OrderState, message_id: str) -> dict[str, Any]:
    """The event document the consumer writes for `state` once its e-mail is sent."""
    return event_document(
        order,
        state,
        email_status="sent",
        email_message_id=message_id,
        email_error=None,
        correlation_id=order.order_id,
    )


async def _walk(probe: PipelineProbe, count: int) -> float:
    """Each state in turn for every order, as the consumer writes it; the seconds it took."""
    es = search_index.connect(probe.es_url)
    index = search_index.OrderSearchIndex(es, probe.events_index, probe.orders_index)
    orders = accepted_orders(seed=55, count=count)
    started = time.perf_counter()
    try:
        for state in ALL_STATES:
            await asyncio.gather(*(index.recorded_event(o.order_id, state.value) for o in orders))
            for order in orders:
                order.enter(state, utc_now())
            events = (sent_event(o, state, f"<{o.order_id}.{state.slug}@bench>") for o in orders)
            await asyncio.gather(*(index.write_event(event) for event in events))
            await asyncio.gather(*(index.write_order(order_document(o)) for o in orders))
        return time.perf_counter() - started
    finally:
        await index.close()


def measure_index(figure: Figure, probe: PipelineProbe, count: int) -> None:
    # The adapter retries a struggling ES forever; the bench does not wait forever.
    elapsed = asyncio.run(asyncio.wait_for(_walk(probe, count), SCENARIO_TIMEOUT_S))
    figure.value = count / elapsed
    figure.notes.append("not in the brief's list: the end to end run's other shared dependency")
    counts = probe.counts()
    kept = ("orders_total", "orders_finalizado", "events_by_state")
    figure.details = {
        "orders": count,
        "elapsed_s": round(elapsed, 3),
        "counts": {name: value for name, value in asdict(counts).items() if name in kept},
    }
    figure.refuse(pipeline_problems(count, counts))
