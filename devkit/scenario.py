"""One test's or bench scenario's own topics, indices, consumer group and gRPC port on a shared
stack, so runs never see each other's orders."""

from __future__ import annotations

import uuid

from elasticsearch import Elasticsearch

from admin import setup
from devkit.credentials import credentials_env
from devkit.net import free_port
from pedidos.runtime.config import Settings, load_settings

# The services' SMTP_FROM in tests and the bench (the bench renders its e-mails with it too).
SENDER = "Pedidos <pedidos@tienda.test>"


def scenario_env(
    stack_env: dict[str, str], suffix: str | None = None, **settings: str
) -> dict[str, str]:
    """Environment for one scenario's services on the stack of `stack_env`: names ending in
    `suffix` (random by default), a free gRPC port, the devkit's API key and order-id secret
    (authentication is on, as in production); `settings` override any variable."""
    suffix = suffix or uuid.uuid4().hex[:8]
    listen = f"127.0.0.1:{free_port()}"
    return {
        **stack_env,
        "PEDIDOS_TOPIC": f"Pedidos-{suffix}",
        "PEDIDOS_STATES_TOPIC": f"Pedidos.estados-{suffix}",
        "PEDIDOS_DEAD_LETTER_TOPIC": f"Pedidos.dlq-{suffix}",
        "KAFKA_CONSUMER_GROUP": f"pedidos-consumer-{suffix}",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "ELASTICSEARCH_EVENTS_INDEX": f"pedidos-order-events-{suffix}",
        "ELASTICSEARCH_ORDERS_INDEX": f"pedidos-orders-{suffix}",
        "GRPC_LISTEN": listen,
        "PRODUCER_ADDRESS": listen,
        "SMTP_FROM": SENDER,
        "LOG_LEVEL": "INFO",
        **credentials_env(),
        **settings,
    }


def prepare(env: dict[str, str]) -> Settings:
    """Create the scenario's topics and index templates, as `admin setup` does; its settings."""
    settings = load_settings(**{key.lower(): value for key, value in env.items()})
    setup.create_topics(settings)
    setup.ready_group_coordinator(settings)
    with Elasticsearch(settings.elasticsearch_url) as es:
        setup.create_index_templates(settings, es)
    return settings
