"""Builds and runs the grpc.aio server: OrderService, health and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pedidos.adapters.elasticsearch.order_lookup import ElasticsearchOrderLookup
from pedidos.adapters.kafka.broker_probe import BrokerProbe
from pedidos.adapters.kafka.publisher import linger_when_busy
from pedidos.adapters.kafka.state_feed import KafkaStateFeed, feed_config
from pedidos.adapters.metrics.serving import start_endpoint, stop_endpoint
from pedidos.bootstrap import search_client
from pedidos.ports import Publisher, StateFeed
from pedidos.runtime.config import Settings
from pedidos.runtime.grpc_tls import server_credentials
from pedidos.runtime.grpc_tracing import server_interceptors
from pedidos.runtime.heap import settle_heap
from pedidos.runtime.shutdown import stop_on_signals
from pedidos.services.intake import OrderIdSecrets, OrderIntake
from pedidos.services.tracking import OrderTracker, StateFanout
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from pedidos.wire.records import StateReached
from producer.auth import InsecureStart, interceptors
from producer.drain import stop_server
from producer.metrics import ProducerMetrics
from producer.servicer import OrderServicer

log = logging.getLogger(__name__)

SERVICE_NAME = orders_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name
SHUTDOWN_GRACE_S = 10.0
# From this many records awaiting their ack on, a new one waits up to BUSY_LINGER_MS to share
# a request with those arriving meanwhile (see LingerWhenBusy).
BUSY_FROM = 4
BUSY_LINGER_MS = 5


@dataclass
class TrackingSources:
    """What the order tracker runs on: the index lookup, and the state feed filling the fan-out.

    Built from settings by `connect`; started before the first call, closed after the last."""

    lookup: ElasticsearchOrderLookup
    fanout: StateFanout
    feed: StateFeed

    @classmethod
    def connect(cls, settings: Settings) -> TrackingSources:
        lookup = ElasticsearchOrderLookup(
            search_client(settings), settings.elasticsearch_orders_index
        )
        fanout = StateFanout()
        loop = asyncio.get_running_loop()

        def deliver(batch: list[StateReached]) -> None:
            # Called on the feed thread; the fan-out lives on the event loop.
            with contextlib.suppress(RuntimeError):  # the loop closed: shutting down
                loop.call_soon_threadsafe(fanout.publish, batch)

        feed = KafkaStateFeed(
            feed_config(settings.kafka_bootstrap_servers, settings.kafka_session_timeout_ms),
            settings.pedidos_states_topic,
            deliver,
        )
        return cls(lookup, fanout, feed)

    async def close(self) -> None:
        await asyncio.to_thread(self.feed.close)
        await self.lookup.close()


def build_server(
    settings: Settings,
    publisher: Publisher,
    tracking: TrackingSources,
    guards: list[grpc.aio.ServerInterceptor],
    metrics: ProducerMetrics | None = None,
) -> tuple[grpc.aio.Server, health.HealthServicer]:
    metrics = metrics or ProducerMetrics()
    server = grpc.aio.server(
        # Tracing outermost, then metrics: a refused call is inside its span and counted with
        # its status code.
        interceptors=[*server_interceptors(), metrics.interceptor(), *guards],
        options=[
            ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
            ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ],
    )
    intake = OrderIntake(
        publisher,
        settings.pedidos_topic,
        settings.producer_idempotency_keys,
        order_id_secrets(settings),
    )
    metrics.watch_intake(intake)
    servicer = OrderServicer(
        intake,
        settings.grpc_deadline_s,
        OrderTracker(tracking.lookup, tracking.fanout),
        tracking.fanout,
        metrics,
    )
    orders_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.grpc_reflection:
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
    if settings.grpc_tls_cert and settings.grpc_tls_key:
        server.add_secure_port(
            settings.grpc_listen,
            server_credentials(
                settings.grpc_tls_cert, settings.grpc_tls_key, settings.grpc_tls_client_ca
            ),
        )
    else:
        server.add_insecure_port(settings.grpc_listen)
    return server, health_servicer


def order_id_secrets(settings: Settings) -> OrderIdSecrets:
    """The keyed-id secrets from settings; without ORDER_ID_SECRET a random one per process."""
    previous = settings.order_id_previous_secret
    if settings.order_id_secret is None:
        log.warning(
            "ORDER_ID_SECRET is not set: ids of orders with an idempotency key are stable only "
            "within this process (set the same secret on every producer replica)"
        )
        current = os.urandom(32)
    else:
        current = settings.order_id_secret.get_secret_value().encode()
    return OrderIdSecrets(
        current,
        previous.get_secret_value().encode() if previous else None,
        settings.order_id_secret_since,
    )


async def serve(settings: Settings) -> None:
    try:
        guards = interceptors(settings)  # before connecting to anything
    except InsecureStart as exc:
        log.error("producer: refusing to start: %s", exc)
        raise SystemExit(2) from None

    # A CreateOrder alone is sent at once; concurrent ones (and a batch's orders) share requests.
    metrics = ProducerMetrics()
    publisher = linger_when_busy(
        settings.kafka_bootstrap_servers,
        "pedidos-producer",
        settings.grpc_deadline_s,
        busy_from=BUSY_FROM,
        busy_linger_ms=BUSY_LINGER_MS,
        observer=metrics.publishes,
    )
    tracking = TrackingSources.connect(settings)
    # Before the first call: the feed covers every change from its start time on.
    tracking.feed.start()
    server, health_servicer = build_server(settings, publisher, tracking, guards, metrics)
    settle_heap()
    await server.start()
    serving = asyncio.Event()
    probe = BrokerProbe(settings.kafka_bootstrap_servers, settings.pedidos_topic)

    def ready() -> tuple[bool, str]:
        # Not while starting or draining: the gRPC health service says the same to gRPC callers.
        return probe() if serving.is_set() else (False, "not serving")

    endpoint = start_endpoint(settings, metrics.registry, ready)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    serving.set()
    log.info("producer listening", extra={"address": settings.grpc_listen})

    stopping = asyncio.Event()
    stop_on_signals(stopping)
    await stopping.wait()

    log.info("producer stopping: draining in-flight calls")
    serving.clear()
    await health_servicer.enter_graceful_shutdown()
    # Watches last as long as an order's walk: end them now (UNAVAILABLE, "watch again").
    tracking.fanout.close()
    # Refuses new calls at once, lets in-flight ones (each bounded by its deadline) finish.
    await stop_server(server, metrics.calls, SHUTDOWN_GRACE_S)
    undelivered = await asyncio.to_thread(publisher.close, SHUTDOWN_GRACE_S)
    await tracking.close()
    stop_endpoint(endpoint)
    log.info("producer stopped", extra={"undelivered": undelivered})
