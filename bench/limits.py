"""The limits of what the services talk to, measured without the services, each with the
services' own code or settings:

- 4 broker limit: raw confluent-kafka produce of the producer's own records, with the
  producer's own configuration (idempotent, acks=all);
- 5 mail limit: raw smtplib sends of the consumer's rendered e-mails to a sink, on one reused
  connection, the way the consumer's SmtpMailer sends them;
- 5b index limit (beyond the brief's list, to explain the end-to-end figure): the consumer's own
  Elasticsearch writes (OrderSearchIndex: lookup, event insert, order upsert per state) for N
  orders walked state by state, without Kafka or SMTP.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from bench.checks import delivery_problems, pipeline_problems
from bench.environment import MailSink, PipelineProbe
from bench.figures import Figure
from bench.options import SCENARIO_TIMEOUT_S
from bench.stats import LatencySummary
from devkit.orders import accepted_orders, order_records
from devkit.scenario import SENDER
from pedidos.adapters.elasticsearch import search_index
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.kafka.publisher import producer_config
from pedidos.domain.order import utc_now
from pedidos.domain.states import ALL_STATES
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


def _produce_all(
    producer: Producer, topic: str, records: list[tuple[str, bytes, Headers]], deadline: float
) -> _Deliveries:
    deliveries = _Deliveries()
    for key, value, headers in records:
        while True:
            try:
                producer.produce(
                    topic,
                    key=key.encode(),
                    value=value,
                    headers=list(headers),
                    on_delivery=deliveries,
                )
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
    warm = _produce_all(producer, topic, records[:1], time.monotonic() + 30)
    started = time.perf_counter()
    deliveries = _produce_all(producer, topic, records, time.monotonic() + SCENARIO_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    figure.value = deliveries.delivered / elapsed
    figure.details = {
        "records": count,
        "elapsed_s": round(elapsed, 3),
        "bytes_per_record": round(sum(len(r[1]) for r in records) / max(count, 1)),
    }
    problems = delivery_problems("records", count, deliveries.delivered, deliveries.failed)
    problems += delivery_problems("warm-up records", 1, warm.delivered, warm.failed)
    if deliveries.last_error:
        problems.append(f"last delivery error: {deliveries.last_error}")
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


def measure_mail(figure: Figure, sink: MailSink, emails: int) -> None:
    messages = state_emails(seed=5, orders=max(emails // 5, 1))
    before = sink.inbox_count()
    sent = _Deliveries()
    latencies: list[float] = []
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S
    client = smtplib.SMTP("127.0.0.1", sink.port, timeout=10)
    try:
        client.ehlo()
        started = time.perf_counter()
        for message in messages:
            if time.monotonic() > deadline:
                sent.last_error = f"timed out after {SCENARIO_TIMEOUT_S:.0f}s"
                break
            try:
                began = time.perf_counter()
                client.sendmail(message.sender, [message.recipient], message.data)
                # Each send alone (one at a time): "one raw SMTP send" of issue #18's limit.
                latencies.append(time.perf_counter() - began)
                sent.delivered += 1
            except smtplib.SMTPException as exc:
                sent.failed += 1
                sent.last_error = str(exc)
        elapsed = time.perf_counter() - started
    finally:
        try:
            client.quit()
        except smtplib.SMTPException:
            client.close()
    figure.value = sent.delivered / elapsed
    figure.latency = LatencySummary.of_seconds(latencies)
    figure.details = {"emails": len(messages), "elapsed_s": round(elapsed, 3)}
    problems = delivery_problems("e-mails", len(messages), sent.delivered, sent.failed)
    after = sink.inbox_count()
    if before is not None and after is not None:
        figure.details["inbox_delta"] = after - before
        if after - before != sent.delivered:
            grew = after - before
            problems.append(f"inbox grew by {grew}, {sent.delivered} e-mails were accepted")
    if sent.last_error:
        problems.append(f"last error: {sent.last_error}")
    figure.refuse(problems)


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
            await asyncio.gather(
                *(
                    index.write_event(
                        event_document(
                            o,
                            state,
                            email_status="sent",
                            email_message_id=f"<{o.order_id}.{state.slug}@bench>",
                            email_error=None,
                            correlation_id=o.order_id,
                        )
                    )
                    for o in orders
                )
            )
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
    figure.details = {
        "orders": count,
        "elapsed_s": round(elapsed, 3),
        "counts": {
            "orders_total": counts.orders_total,
            "orders_finalizado": counts.orders_finalizado,
            "events_by_state": dict(counts.events_by_state),
        },
    }
    figure.refuse(pipeline_problems(count, counts))
