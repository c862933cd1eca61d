"""Builds the consumer's object graph from Settings and runs it until SIGTERM/SIGINT.

`wire_consumer` is the graph over any adapters; `run_consumer` gives it Kafka, SMTP and
Elasticsearch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from consumer.admission import Admission
from consumer.assignments import Assignments
from consumer.dead_letters import DeadLetters
from consumer.loop import (
    BROKER_PATIENCE_S,
    SOURCE_CLOSE_LIMIT_S,
    STEPS_GRACE_S,
    ConsumerLoop,
    RecordSource,
)
from consumer.metrics import ConsumerMetrics
from consumer.scheduling import StepScheduler
from consumer.stuck import EXIT_STUCK, BusyThread, stuck_call
from pedidos.adapters.elasticsearch import search_index
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.kafka.broker_probe import BrokerProbe
from pedidos.adapters.kafka.lag import LagReader
from pedidos.adapters.kafka.publisher import LingerWhenBusy, linger_when_busy
from pedidos.adapters.kafka.record_source import (
    FetchBatching,
    KafkaRecordSource,
    consumer_config,
)
from pedidos.adapters.metrics.serving import start_endpoint, stop_endpoint
from pedidos.adapters.smtp_mailer import SmtpMailer, smtp_settings
from pedidos.bootstrap import search_client
from pedidos.ports import (
    Mailer,
    OrderIndex,
    PermanentMailError,
    Publisher,
    TransientMailError,
)
from pedidos.runtime.config import Settings
from pedidos.runtime.heap import settle_heap
from pedidos.runtime.shutdown import stop_on_signals
from pedidos.services.mail_outage import MailOutage
from pedidos.services.order_walk import OrderWalk, StageDelays

log = logging.getLogger(__name__)

# State records are retried by the order walk itself, so librdkafka may give up early.
STATE_PUBLISH_TIMEOUT_S = 30.0
# Under load, state records wait this long to share a request: at 2 ms a loaded consumer sent
# a produce request per record or two, and librdkafka's threads took ~1 ms of CPU per order;
# at 5 ms they take a quarter of that. A record published while none of this consumer's
# records awaits its ack goes at once (LingerWhenBusy): an order alone waited those 5 ms at
# each step.
STATE_LINGER_MS = 5.0
STATE_BUSY_FROM = 1
# At a stop, after the loop's grace and bounded close: the state records still queued get this
# long to reach the broker, and BROKER_PATIENCE_S with none answered (a broker gone). Their
# steps were handed back: delivering them spares the next owner a publish, nothing more.
STATE_FLUSH_S = 10.0
# The longest a stop may take with a dependency down, the broker silent included.
LONGEST_STOP_S = STEPS_GRACE_S + SOURCE_CLOSE_LIMIT_S + STATE_FLUSH_S


async def run_consumer(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    stop_on_signals(stop)

    metrics = ConsumerMetrics()
    publisher = state_publisher(settings, metrics)
    mailer = SmtpMailer(smtp_settings(settings))
    index = order_index(settings)
    source = record_source(settings)
    parts = wire_consumer(
        settings, source=source, publisher=publisher, mailer=mailer, index=index, metrics=metrics
    )
    consumer, assignments, admission = parts.loop, parts.assignments, parts.admission
    metrics.watch(
        lambda: consumer.in_flight,
        lambda: admission.open_orders,
        lambda: admission.paused,
        source.topics,
    )
    metrics.watch_lag(
        LagReader(settings.kafka_bootstrap_servers, timeout_s=2),
        settings.kafka_consumer_group,
        assignments.owned,
    )
    endpoint = start_endpoint(
        settings,
        metrics.registry,
        _readiness(
            assignments,
            BrokerProbe(settings.kafka_bootstrap_servers, settings.pedidos_topic),
            source,
        ),
    )
    settle_heap()
    log.info("consumer started", extra={"group": settings.kafka_consumer_group})
    warm_up = asyncio.create_task(
        warm_up_mail(mailer, f"{settings.smtp_host}:{settings.smtp_port}")
    )
    try:
        await consumer.run(stop)
    finally:
        stop_endpoint(endpoint)
        await warm_up  # bounded by SMTP_TIMEOUT_S; its connection must not outlive close()
        await index.close()
        await asyncio.to_thread(publisher.close, STATE_FLUSH_S, BROKER_PATIENCE_S)
        await asyncio.to_thread(mailer.close)
        log.info("consumer stopped", extra={"processed": consumer.processed})
    if consumer.stuck is not None:
        raise SystemExit(EXIT_STUCK)


async def warm_up_mail(mailer: SmtpMailer, relay: str) -> None:
    """Connects (and logs in) to the SMTP relay beside the start: the first e-mail does not pay
    for the connection, and a relay that is down or refuses our TLS or credentials is named now,
    in one line, not at the first order. A relay that wants a login we do not give says so only
    at the first e-mail (MAIL FROM)."""
    try:
        await asyncio.to_thread(mailer.warm_up)
    except (TransientMailError, PermanentMailError) as exc:
        log.warning(
            "SMTP relay not ready: %s; e-mails wait for it and are retried",
            exc,
            extra={"smtp": relay},
        )
    else:
        log.info("SMTP relay connected", extra={"smtp": relay})


def state_publisher(settings: Settings, metrics: ConsumerMetrics) -> LingerWhenBusy:
    return linger_when_busy(
        settings.kafka_bootstrap_servers,
        "pedidos-consumer",
        STATE_PUBLISH_TIMEOUT_S,
        busy_from=STATE_BUSY_FROM,
        busy_linger_ms=STATE_LINGER_MS,
        observer=metrics.publishes,
        # A state record published twice is walked once (the ledger), so a stuck producer
        # may be replaced; two timeouts in a row is a minute with nothing delivered there.
        renew_after_timeouts=2,
    )


def record_source(settings: Settings) -> KafkaRecordSource:
    # The consumer reads back the states topic it publishes to: each state record triggers the
    # order's next step, so a walk survives restarts and rebalances.
    return KafkaRecordSource(
        consumer_config(
            settings.kafka_bootstrap_servers,
            settings.kafka_consumer_group,
            settings.kafka_session_timeout_ms,
            fetch=FetchBatching(
                settings.consumer_fetch_min_bytes, settings.consumer_fetch_max_wait_ms
            ),
        ),
        [settings.pedidos_topic, settings.pedidos_states_topic],
    )


def order_index(settings: Settings) -> search_index.OrderSearchIndex:
    return search_index.OrderSearchIndex(
        search_client(settings),
        settings.elasticsearch_events_index,
        settings.elasticsearch_orders_index,
    )


@dataclass(frozen=True, slots=True)
class ConsumerParts:
    loop: ConsumerLoop
    assignments: Assignments
    admission: Admission


def wire_consumer(
    settings: Settings,
    *,
    source: RecordSource,
    publisher: Publisher,
    mailer: Mailer,
    index: OrderIndex,
    metrics: ConsumerMetrics,
) -> ConsumerParts:
    """The consumer's own object graph over the adapters it is given: Kafka, SMTP and
    Elasticsearch in `run_consumer`, in-memory ones in the bench's `bench.own_code`."""
    dead_letters = DeadLetters(publisher, settings.pedidos_dead_letter_topic, metrics=metrics)
    mail_outage = MailOutage()
    walk = OrderWalk(
        mailer=metrics.mailer(mailer),
        index=metrics.index(index),
        publisher=publisher,
        renderer=EmailRenderer(settings.smtp_from, settings.consumer_max_open_orders),
        states_topic=settings.pedidos_states_topic,
        delays=StageDelays(settings.stage_delay_min_s, settings.stage_delay_max_s),
        dead_letter=dead_letters.for_walk,
        unrecorded_sends=settings.consumer_max_unrecorded_emails,
        mail_outage=mail_outage,
    )
    assignments = Assignments()
    admission = Admission(settings.pedidos_topic, settings.consumer_max_open_orders, mail_outage)
    loop = ConsumerLoop(
        source,
        StepScheduler(
            walk,
            assignments,
            admission,
            dead_letters,
            metrics=metrics,
            group=settings.kafka_consumer_group,
            states_topic=settings.pedidos_states_topic,
        ),
        assignments,
        admission,
        max_in_flight=settings.consumer_max_in_flight,
    )
    return ConsumerParts(loop, assignments, admission)


def _readiness(
    assignments: Assignments,
    broker: BrokerProbe,
    source: BusyThread,
    stuck_limit_s: float | None = None,
) -> Callable[[], tuple[bool, str]]:
    """Ready once the broker answers and the group gave this process partitions to work, and
    while its Kafka thread is not stuck in one call."""

    def ready() -> tuple[bool, str]:
        stuck = stuck_call(source, stuck_limit_s)
        if stuck is not None:
            return False, stuck
        reachable, why = broker()
        if not reachable:
            return False, why
        owned = assignments.owned()
        if not owned:
            return (
                False,
                "no partitions assigned (joining the group, or more members than partitions)",
            )
        return True, f"ok: {len(owned)} partitions"

    return ready
