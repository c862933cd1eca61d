"""Creates the Kafka topics and Elasticsearch index templates (and indices); idempotent."""

from __future__ import annotations

import json
import logging
from importlib.resources import files
from typing import Any

from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from elasticsearch import Elasticsearch

from pedidos.adapters.kafka.lag import LagError, LagReader
from pedidos.runtime.config import Settings

log = logging.getLogger(__name__)


class SetupError(RuntimeError):
    pass


class PartitionsRefused(SetupError):
    """The request itself is wrong (shrinking, a missing topic): nothing was changed."""


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.pedidos_topic,
        settings.pedidos_states_topic,
        settings.pedidos_dead_letter_topic,
    ]


def create_topics(settings: Settings, timeout_s: float = 30) -> dict[str, str]:
    """Create the topics (co-partitioned: same count, same keys); existing ones are fine."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    config = _topic_config(settings)
    new = [
        NewTopic(
            name,
            num_partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
            config=config,
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
                outcome[name] = "exists" + _apply_retention(admin, name, config, timeout_s)
            else:
                raise SetupError(f"cannot create topic {name}: {exc}") from None
        except Exception as exc:
            raise SetupError(f"cannot create topic {name}: {exc}") from None
    return outcome


def ready_group_coordinator(settings: Settings, timeout_s: float = 30) -> str:
    """Describe the consumer group until its coordinator answers. On a new broker the first
    such request creates the offsets topic and loads the group's coordinator; a consumer that
    got there first waited it out in librdkafka's one-second coordinator queries, and the
    first order sat 1-3 s before its first step. Returns the group's state."""
    group = settings.kafka_consumer_group
    reader = LagReader(settings.kafka_bootstrap_servers)
    try:
        state = reader.describe([group], coordinator_wait_s=timeout_s)[group].state
    except LagError as exc:
        raise SetupError(f"consumer group {group}: coordinator not ready: {exc}") from None
    # Kafka calls a group no member ever joined DEAD.
    known = "new group" if state == ConsumerGroupState.DEAD else state.name.lower()
    return f"coordinator ready ({known})"


def _topic_config(settings: Settings) -> dict[str, str]:
    """Per-topic settings: PEDIDOS_RETENTION_MS bounds how long orders (and their personal data)
    stay on the Pedidos* topics; unset, the broker's default (Kafka: 7 days)."""
    if settings.pedidos_retention_ms is None:
        return {}
    return {"retention.ms": str(settings.pedidos_retention_ms)}


def _apply_retention(
    admin: AdminClient, name: str, config: dict[str, str], timeout_s: float
) -> str:
    """Set the retention of an existing topic too (setup is re-run to change it)."""
    if not config:
        return ""
    resource = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in config.items()
        ],
    )
    try:
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(timeout=timeout_s)
    except Exception as exc:  # e.g. Tansu, which has no IncrementalAlterConfigs
        log.warning("topic retention not applied", extra={"topic": name, "error": str(exc)})
        return f", retention.ms not applied ({exc})"
    return f", retention.ms={config['retention.ms']}"


def list_topics(settings: Settings, timeout_s: float = 10) -> dict[str, int]:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise SetupError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}"
        ) from None
    return {name: len(topic.partitions) for name, topic in sorted(metadata.topics.items())}


def _kafka_error(exc: KafkaException) -> KafkaError | None:
    error = exc.args[0] if exc.args else None
    return error if isinstance(error, KafkaError) else None


def add_partitions(settings: Settings, count: int, timeout_s: float = 30) -> dict[str, str]:
    """Bring the co-partitioned topics to `count` partitions each, all or (if possible) none.

    Kafka can only add partitions, so a smaller count is refused. Topics left unequal (say by
    an interrupted earlier run) are all brought to `count`. Every change is validated by the
    broker before any is made, so a refused request changes nothing.
    """
    if count < 1:
        raise PartitionsRefused(f"a topic needs at least 1 partition, not {count}")
    names = topic_names(settings)
    current = list_topics(settings, timeout_s)
    _check_growth(names, current, count)
    outcome = {name: f"already {count} partitions" for name in names if current[name] == count}
    grow = [NewPartitions(name, count) for name in names if current[name] < count]
    if not grow:
        return outcome
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for validate_only in (True, False):
        futures = admin.create_partitions(
            grow,
            validate_only=validate_only,
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        failed = []
        for name, future in futures.items():
            problem = _partitions_problem(future, timeout_s, settings.kafka_bootstrap_servers)
            if problem:
                failed.append(f"{name}: {problem}")
            elif not validate_only:
                outcome[name] = f"{current[name]} -> {count} partitions"
        if failed:
            done = [f"{name} {text}" for name, text in outcome.items() if "->" in text]
            state = f"; done: {', '.join(done)}; run again to finish" if done else ""
            raise SetupError(f"adding partitions failed: {'; '.join(failed)}{state}")
    return {name: outcome[name] for name in names}


def _check_growth(names: list[str], current: dict[str, int], count: int) -> None:
    """Refuse, changing nothing, a missing topic or a count that would shrink one."""
    missing = [name for name in names if name not in current]
    if missing:
        raise PartitionsRefused(
            f"missing topics: {', '.join(missing)}; run `python -m admin setup` first"
        )
    larger = [f"{name} has {current[name]}" for name in names if current[name] > count]
    if larger:
        raise PartitionsRefused(
            f"refusing to shrink to {count} partitions: {'; '.join(larger)} "
            "(Kafka cannot remove partitions)"
        )


def _partitions_problem(future: Any, timeout_s: float, servers: str) -> str | None:
    """Why one topic's CreatePartitions failed, or None; a broker without it is a SetupError."""
    try:
        future.result(timeout=timeout_s)
    except KafkaException as exc:
        error = _kafka_error(exc)
        if error is not None and error.code() in (
            KafkaError.UNSUPPORTED_VERSION,
            KafkaError._UNSUPPORTED_FEATURE,
            KafkaError.INVALID_REQUEST,
        ):
            raise SetupError(
                f"the broker at {servers} cannot add partitions "
                f"(no CreatePartitions support, e.g. Tansu): {error.str()}"
            ) from None
        return error.str() if error else str(exc)
    except Exception as exc:
        return str(exc)
    return None


def delete_expired_documents(settings: Settings, es: Elasticsearch) -> dict[str, int]:
    """Delete the documents of orders accepted more than ELASTICSEARCH_RETENTION_DAYS ago from
    both indices (`python -m admin retention`, run daily). A delete-by-query, not an ILM
    policy: each index is a single index that documents are updated in, which ILM's delete
    phase could only drop whole."""
    days = settings.elasticsearch_retention_days
    if days is None:
        return {}
    query = {"range": {"accepted_at": {"lt": f"now-{days}d"}}}
    deleted = {}
    for index in (settings.elasticsearch_events_index, settings.elasticsearch_orders_index):
        answer = es.delete_by_query(index=index, query=query, conflicts="proceed", refresh=True)
        deleted[index] = int(answer.get("deleted", 0))
    return deleted


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
