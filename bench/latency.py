"""Issue #18's latency figures: what one operation costs alone, and one order alone.

- 5c latency limits, each one operation at a time with nothing else running: one raw
  Elasticsearch event write (a bulk of one `create`, as the consumer sends it), and one record
  on the broker: produce → ack (librdkafka with linger 0: the broker's own ack latency) and
  produce → consumed. The raw SMTP send is timed by the mail limit (5), one send at a time.
- 8 one order alone: `CreateOrder`, then wait for that order's `Finalizado` (the consumer logs
  it once the order's document is written), the next order only then; stage delays 0.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from itertools import pairwise
from statistics import fmean, median

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from elasticsearch import Elasticsearch

from bench.figures import Figure, at_most_times
from bench.limits import sent_event
from bench.load import order_requests
from bench.logscan import TransitionTail
from devkit.credentials import producer_channel
from devkit.orders import accepted_orders, order_records
from pedidos.adapters.elasticsearch.search_index import event_id
from pedidos.adapters.kafka.publisher import producer_config
from pedidos.adapters.kafka.record_source import consumer_config
from pedidos.domain.order import utc_now
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.runtime.config import Settings
from pedidos.v1 import orders_pb2_grpc

WARMUP = 5  # untimed first operations: connections, metadata, the consumer's first fetch
OP_TIMEOUT_S = 10.0
# The limit's consumer polls the broker at most this long: the issue's own "with 10 ms".
FETCH_WAIT_MS = 10
# An order alone waits this long for its Finalizado (the first one: the consumer's start).
ORDER_TIMEOUT_S = 30.0
FIRST_ORDER_TIMEOUT_S = 90.0
POLL_S = 0.003
ALONE_FACTOR = 1.5  # one order's p50 ≤ 1.5 × 5 × (SMTP send + ES write + broker round trip)
# The parts of one order alone's limit, each measured alone earlier in the run, by key.
ALONE_PARTS = {
    "SMTP send": "mail_limit.discard",
    "ES write": "latency.es_write",
    "broker round trip": "latency.broker_round_trip",
}
# The call; from its answer until the consumer entered Procesando; then each state, from its
# entry to the next one's (the last: to its line logged, once its documents are written).
STEPS = ("CreateOrder", "to Procesando", *(state.value for state in ALL_STATES))


def measure_index_write(figure: Figure, env: Mapping[str, str], samples: int) -> None:
    """One event document per request, one request at a time."""
    index = env["ELASTICSEARCH_EVENTS_INDEX"]
    orders = accepted_orders(seed=66, count=samples + WARMUP)
    took: list[float] = []
    with Elasticsearch(env["ELASTICSEARCH_URL"], request_timeout=OP_TIMEOUT_S) as es:
        for number, order in enumerate(orders):
            order.enter(OrderState.PROCESANDO, utc_now())
            doc = sent_event(order, OrderState.PROCESANDO, f"<{order.order_id}@bench>")
            action = {"create": {"_index": index, "_id": event_id(order.order_id, doc["state"])}}
            began = time.perf_counter()
            answer = es.bulk(operations=[action, doc], refresh=False)
            elapsed = time.perf_counter() - began
            if answer.get("errors"):
                raise RuntimeError(f"event write refused: {answer['items'][0]}")
            if number >= WARMUP:
                took.append(elapsed)
    figure.set_latency(took)
    figure.details = {"writes": len(took)}


def _await_key(consumer: Consumer, key: bytes, deadline: float) -> None:
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error() is not None:
            raise RuntimeError(f"consumer: {message.error()}")
        if message.key() == key:
            return
    raise TimeoutError(f"record {key!r} not consumed within {OP_TIMEOUT_S:.0f}s")


def measure_broker_latency(figure: Figure, settings: Settings, samples: int) -> list[Figure]:
    """Produce → consumed into `figure`; produce → ack as a second figure."""
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.pedidos_topic
    producer = Producer({**producer_config(bootstrap, "pedidos-bench-latency", 30), "linger.ms": 0})
    group = f"pedidos-bench-latency-{uuid.uuid4().hex[:6]}"
    config = {**consumer_config(bootstrap, group, 6000), "fetch.wait.max.ms": FETCH_WAIT_MS}
    consumer = Consumer(config)
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])  # the scenario's own topic
    _, value, headers = order_records(seed=6, count=1)[0]
    acks: list[float] = []
    trips: list[float] = []
    reports: list[tuple[KafkaError | None, float]] = []  # this record's, when it came

    def report(error: KafkaError | None, _: Message) -> None:
        reports.append((error, time.perf_counter()))

    try:
        for number in range(samples + WARMUP):
            key = f"latency-{number}".encode()
            reports.clear()
            began = time.perf_counter()
            producer.produce(
                topic, value=value, key=key, headers=list(headers), partition=0, on_delivery=report
            )
            producer.flush(OP_TIMEOUT_S)
            if not reports or reports[0][0] is not None:
                raise RuntimeError(f"record not acknowledged: {reports}")
            _await_key(consumer, key, time.monotonic() + OP_TIMEOUT_S)
            if number >= WARMUP:
                acks.append(reports[0][1] - began)
                trips.append(time.perf_counter() - began)
    finally:
        consumer.close()
    figure.set_latency(trips)
    figure.details = {"records": len(trips), "fetch_wait_max_ms": FETCH_WAIT_MS}
    ack = Figure("latency.broker_ack", figure.scenario, "produce → ack, 1 record", "ms")
    ack.set_latency(acks)
    ack.details = {"records": len(acks), "linger_ms": 0}
    return [ack]


def _awaited(
    tail: TransitionTail, order_id: str, deadline: float
) -> dict[str, float]:  # state → time.time() it was logged
    reached: dict[str, float] = {}
    # Every state, not only the last: a step taken ahead of its state record (no stage delay)
    # logs once its record is acknowledged, which can be after the next step logged.
    while any(state.value not in reached for state in ALL_STATES):
        for seen, state, at in tail.transitions():
            if seen == order_id:
                reached[state] = at
        if time.monotonic() > deadline:
            raise TimeoutError(f"order {order_id} reached only {sorted(reached)}")
        time.sleep(POLL_S)
    return reached


def step_times(
    sent: float, acked: float, entered: Mapping[str, float], finished: float
) -> list[float]:
    """Seconds of each of `STEPS` for one order: `entered` is when the consumer entered each
    state (the order document's `reached_at`, time.time()), `finished` its Finalizado line.
    Not the log lines of each state: a step taken ahead of its state record (no stage delay)
    logs once its record is acknowledged and its document written, after the next step began."""
    moments = [sent, acked, *(entered[state.slug] for state in ALL_STATES), finished]
    return [later - earlier for earlier, later in pairwise(moments)]


def _entered(es: Elasticsearch, index: str, order_id: str) -> dict[str, float]:
    """When the consumer entered each state of `order_id`, from its order document."""
    doc = es.get(index=index, id=order_id)["_source"]
    return {slug: datetime.fromisoformat(at).timestamp() for slug, at in doc["reached_at"].items()}


def _one_order(
    call: Callable[[int], str],
    number: int,
    tail: TransitionTail,
    timeout_s: float,
    entered: Callable[[str], dict[str, float]],
) -> list[float]:
    sent = time.time()
    order_id = call(number)
    acked = time.time()
    reached = _awaited(tail, order_id, time.monotonic() + timeout_s)
    return step_times(sent, acked, entered(order_id), reached[OrderState.FINALIZADO.value])


def alone_limit(parts_ms: Mapping[str, float | None]) -> float | None:
    """5 × (one raw SMTP send + one raw ES event write + one broker round trip)."""
    known = [value for value in parts_ms.values() if value is not None]
    return 5 * sum(known) if known and len(known) == len(parts_ms) else None


def measure_one_order(
    figure: Figure,
    address: str,
    consumer_log: TransitionTail,
    env: Mapping[str, str],
    orders: int,
    parts_ms: Mapping[str, float | None],
) -> None:
    """`orders` orders one after the other (and one untimed first), each until Finalizado."""
    with (
        producer_channel(address) as channel,
        Elasticsearch(env["ELASTICSEARCH_URL"], request_timeout=OP_TIMEOUT_S) as es,
    ):
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        request = order_requests(seed=300, key_prefix=f"alone-{uuid.uuid4().hex[:6]}")
        index = env["ELASTICSEARCH_ORDERS_INDEX"]

        def call(number: int) -> str:
            return str(stub.CreateOrder(request(number), timeout=OP_TIMEOUT_S).order_id)

        def entered(order_id: str) -> dict[str, float]:
            return _entered(es, index, order_id)

        _one_order(call, 0, consumer_log, FIRST_ORDER_TIMEOUT_S, entered)
        steps = [
            _one_order(call, n, consumer_log, ORDER_TIMEOUT_S, entered)
            for n in range(1, orders + 1)
        ]
    figure.set_latency([sum(each) for each in steps])
    limit = alone_limit(parts_ms)
    figure.limit = limit
    figure.limit_label = "5 × (SMTP send + ES write + broker round trip)"
    figure.requirements = [at_most_times("p50 ms", figure.value, limit, ALONE_FACTOR)]
    breakdown = {name: round(median(s[i] for s in steps) * 1000, 2) for i, name in enumerate(STEPS)}
    trimmed = {
        name: round(trimmed_mean([s[i] for s in steps]) * 1000, 2) for i, name in enumerate(STEPS)
    }
    figure.notes.append(
        "per step, mean without the slowest and fastest 5 %, ms (each state from its entry to "
        "the next's; the documents' entry times are whole milliseconds, so a p50 is too): "
        + ", ".join(f"{name} {ms:,.2f}" for name, ms in trimmed.items())
    )
    shown = ", ".join(
        f"{name} {'?' if ms is None else f'{ms:.2f}'}" for name, ms in parts_ms.items()
    )
    figure.notes.append(f"the limit's parts, p50 ms, each alone in this run: {shown}")
    figure.details = {
        "orders": orders,
        "steps_p50_ms": breakdown,
        "steps_trimmed_mean_ms": trimmed,
        "limit_parts_ms": dict(parts_ms),
    }


def trimmed_mean(values: Sequence[float], cut: float = 0.05) -> float:
    """The mean without the fastest and slowest `cut` of the values: robust to the odd slow
    order, and over many orders finer than the whole milliseconds each value is made of (a
    median of such values is itself a whole millisecond)."""
    ordered = sorted(values)
    drop = int(len(ordered) * cut)
    return fmean(ordered[drop : len(ordered) - drop])
