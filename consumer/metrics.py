"""The consumer's metrics: steps by state and outcome, the duration of each step's e-mail,
index writes and publish, e-mails by result, index write failures, dead letters by kind, the
records and orders in progress, paused topics, consumer lag per partition, and how long orders
take from accepted to Finalizado."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pedidos.adapters.kafka.lag import LagError, LagReader
from pedidos.adapters.metrics.measured import (
    FAST_BUCKETS,
    MeasuredIndex,
    MeasuredMailer,
    PublishMetrics,
    messaging_metrics,
)
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.ports import Mailer, OrderIndex

# An order's walk: seconds with no stage delays, minutes with the defaults under a backlog.
ORDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300, 600)
TopicPartition = tuple[str, int]


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._steps = Counter(
            "pedidos_steps",
            "Steps by the state entered and outcome: done, handed_back (partition moved before "
            "the e-mail), not_ours (revoked while waiting), dead_lettered.",
            ["state", "outcome"],
            registry=self.registry,
        )
        self._phase = Histogram(
            "pedidos_step_phase_duration_seconds",
            "Each part of a step: email (one SMTP attempt), ledger (its event document "
            "written, batched), current_state (the order's document written, batched), publish "
            "(the state record to broker acknowledgement).",
            ["phase"],
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self._emails = Counter(
            "pedidos_emails",
            "E-mail attempts by result: sent, retried (a transient failure), rejected.",
            ["result"],
            registry=self.registry,
        )
        self._index_failures = Counter(
            "pedidos_index_write_failures",
            "Elasticsearch document writes that failed (the step retries them).",
            registry=self.registry,
        )
        self._dead_letters = Counter(
            "pedidos_dead_letters",
            "Records sent to the dead-letter topic, by kind (record, notification).",
            ["kind"],
            registry=self.registry,
        )
        self._order_duration = Histogram(
            "pedidos_order_duration_seconds",
            "From accepted by the producer to Finalizado, per order.",
            buckets=ORDER_BUCKETS,
            registry=self.registry,
        )
        # Told of each state record's (and dead letter's) answer by the Kafka publisher.
        self.publishes = PublishMetrics(
            *messaging_metrics(self.registry), also=self._phase.labels("publish")
        )
        self._done = {state: self._steps.labels(state.value, "done") for state in OrderState}

    # -- the ports, measured ---------------------------------------------------------------
    def mailer(self, mailer: Mailer) -> MeasuredMailer:
        return MeasuredMailer(mailer, self._phase.labels("email"), self._emails)

    def index(self, index: OrderIndex) -> MeasuredIndex:
        phase = self._phase.labels
        return MeasuredIndex(index, phase("ledger"), phase("current_state"), self._index_failures)

    # -- events ------------------------------------------------------------------------------
    def step(self, state: OrderState | None, outcome: str) -> None:
        if outcome == "done" and state is not None:
            self._done[state].inc()
        else:
            self._steps.labels(state.value if state else "unknown", outcome).inc()

    def finished(self, order: Order, state: OrderState) -> None:
        reached = order.reached.get(state)
        if reached is not None:
            self._order_duration.observe(max((reached - order.accepted_at).total_seconds(), 0))

    def dead_lettered(self, kind: str) -> None:
        self._dead_letters.labels(kind).inc()

    # -- read at scrape time -----------------------------------------------------------------
    def watch(
        self,
        in_flight: Callable[[], int],
        open_orders: Callable[[], int],
        paused: Callable[[], frozenset[str]],
        topics: frozenset[str],
    ) -> None:
        Gauge(
            "pedidos_records_in_flight",
            "Records fetched and not yet done (waiting for their stage or being worked).",
            registry=self.registry,
        ).set_function(in_flight)
        Gauge(
            "pedidos_open_orders",
            "Orders started here and not yet finished (the admission bound applies to it).",
            registry=self.registry,
        ).set_function(open_orders)
        paused_gauge = Gauge(
            "pedidos_topic_paused",
            "1 while fetching from the topic is paused (full, mail outage, too many open orders).",
            ["topic"],
            registry=self.registry,
        )
        for topic in topics:
            paused_gauge.labels(topic).set_function(_is_paused(topic, paused))

    def watch_lag(
        self, reader: LagReader, group: str, owned: Callable[[], list[TopicPartition]]
    ) -> None:
        self.registry.register(_LagCollector(reader, group, owned))


def _is_paused(topic: str, paused: Callable[[], frozenset[str]]) -> Callable[[], float]:
    return lambda: float(topic in paused())


class _LagCollector(Collector):
    """Lag of the partitions this process holds, read from the broker on every scrape: the same
    committed and end offsets `python -m admin lag` shows, so the two always agree. Each worker
    reports its own partitions, so summing over workers counts every partition once."""

    def __init__(
        self, reader: LagReader, group: str, owned: Callable[[], list[TopicPartition]]
    ) -> None:
        self._reader = reader
        self._group = group
        self._owned = owned

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kafka_consumer_group_lag",
            "Records not yet committed by the group, per partition this process holds.",
            labels=["group", "topic", "partition"],
        )
        owned = set(self._owned())
        if owned:
            try:
                groups = self._reader.read([self._group], missing_ok=True)
            except LagError:
                groups = []  # the broker is away: no figure rather than a stale one
            for group in groups:
                for p in group.partitions:
                    if (p.topic, p.partition) in owned:
                        family.add_metric([self._group, p.topic, str(p.partition)], p.lag)
        yield family
