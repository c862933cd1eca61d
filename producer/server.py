"""Builds and runs the grpc.aio server: OrderService, health and reflection."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pedidos.adapters.kafka_publisher import KafkaPublisher, producer_config
from pedidos.config import Settings
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from producer.service import OrderService

log = logging.getLogger(__name__)

SERVICE_NAME = orders_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name
SHUTDOWN_GRACE_S = 10.0


def build_server(
    settings: Settings, publisher: KafkaPublisher
) -> tuple[grpc.aio.Server, health.HealthServicer]:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
            ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ]
    )
    orders_pb2_grpc.add_OrderServiceServicer_to_server(
        OrderService(publisher, settings.pedidos_topic, settings.grpc_deadline_s), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    server.add_insecure_port(settings.grpc_listen)
    return server, health_servicer


async def serve(settings: Settings) -> None:
    publisher = KafkaPublisher(
        producer_config(
            settings.kafka_bootstrap_servers, "pedidos-producer", settings.grpc_deadline_s
        )
    )
    server, health_servicer = build_server(settings, publisher)
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("producer listening", extra={"address": settings.grpc_listen})

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()

    log.info("producer stopping: draining in-flight calls")
    await health_servicer.enter_graceful_shutdown()
    # Refuses new calls at once, lets in-flight ones (each bounded by its deadline) finish.
    await server.stop(SHUTDOWN_GRACE_S)
    undelivered = await asyncio.to_thread(publisher.close, SHUTDOWN_GRACE_S)
    log.info("producer stopped", extra={"undelivered": undelivered})
