"""Creates the Kafka topics and Elasticsearch index templates (and indices); idempotent."""

from __future__ import annotations

import json
import logging
from importlib.resources import files
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from elasticsearch import Elasticsearch

from pedidos.config import Settings

log = logging.getLogger(__name__)


class SetupError(RuntimeError):
    pass


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.pedidos_topic,
        settings.pedidos_states_topic,
        settings.pedidos_dead_letter_topic,
    ]


def create_topics(settings: Settings, timeout_s: float = 30) -> dict[str, str]:
    """Create the topics (co-partitioned: same count, same keys); existing ones are fine."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    new = [
        NewTopic(
            name,
            num_partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
        )
        for name in topic_names(settings)
    ]
    outcome: dict[str, str] = {}
    try:
        futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
    except KafkaException as exc:
        raise SetupError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}"
        ) from None
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            outcome[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                outcome[name] = "exists"
            else:
                raise SetupError(f"cannot create topic {name}: {exc}") from None
        except Exception as exc:
            raise SetupError(f"cannot create topic {name}: {exc}") from None
    return outcome


def list_topics(settings: Settings, timeout_s: float = 10) -> dict[str, int]:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise SetupError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}"
        ) from None
    return {name: len(topic.partitions) for name, topic in sorted(metadata.topics.items())}


def index_template(file_name: str, index_name: str) -> dict[str, Any]:
    template: dict[str, Any] = json.loads(
        files("admin").joinpath("elasticsearch", file_name).read_text()
    )
    # Follow the configured index name, so renaming an index keeps its mapping.
    template["index_patterns"] = [f"{index_name}*"]
    return template


def create_index_templates(settings: Settings, es: Elasticsearch) -> dict[str, str]:
    outcome = {}
    for file_name, index in (
        ("pedidos-order-events.json", settings.elasticsearch_events_index),
        ("pedidos-orders.json", settings.elasticsearch_orders_index),
    ):
        es.indices.put_index_template(name=index, **index_template(file_name, index))
        if es.indices.exists(index=index):
            outcome[index] = "exists"
        else:
            es.indices.create(index=index)
            outcome[index] = "created"
    return outcome
