"""Scenario 4: the broker limit — raw confluent-kafka produce of the producer's own records,
with the producer's own configuration (idempotent, acks=all)."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, Message, Producer

from bench.checks import delivery_problems
from bench.figures import Figure
from devkit.orders import order_records
from pedidos.adapters.kafka.publisher import producer_config
from pedidos.wire.records import Headers


class _Deliveries:
    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.last_error = ""

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


def broker_figure(bootstrap: str, topic: str, count: int, timeout_s: float) -> Figure:
    records = order_records(seed=4, count=count)
    producer = Producer(producer_config(bootstrap, "pedidos-bench-raw", timeout_s))
    # Untimed: metadata, connection and the idempotent producer id.
    warm = _produce_all(producer, topic, records[:1], time.monotonic() + 30)
    started = time.perf_counter()
    deliveries = _produce_all(producer, topic, records, time.monotonic() + timeout_s)
    elapsed = time.perf_counter() - started
    figure = Figure(
        key="broker_limit",
        scenario="4 Broker limit",
        label="raw produce (acks=all, idempotent)",
        unit="records/s",
        value=deliveries.delivered / elapsed,
        details={
            "records": count,
            "elapsed_s": round(elapsed, 3),
            "bytes_per_record": round(sum(len(r[1]) for r in records) / max(count, 1)),
        },
    )
    problems = delivery_problems("records", count, deliveries.delivered, deliveries.failed)
    problems += delivery_problems("warm-up records", 1, warm.delivered, warm.failed)
    if deliveries.last_error:
        problems.append(f"last delivery error: {deliveries.last_error}")
    figure.refuse(problems)
    return figure
