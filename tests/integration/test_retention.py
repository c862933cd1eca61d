"""Retention an operator sets (issue #16): `retention.ms` on the Pedidos* topics, and the
deletion of Elasticsearch documents of orders older than ELASTICSEARCH_RETENTION_DAYS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from elasticsearch import Elasticsearch

from admin import setup
from devkit.scenario import prepare, scenario_env
from devkit.stack import EmbeddedStack
from devkit.waiting import wait_for
from pedidos.runtime.config import load_settings

pytestmark = pytest.mark.integration


def retention_ms(bootstrap: str, topic: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    return str(configs["retention.ms"].value)


def has_retention(bootstrap: str, topic: str, value: str) -> bool:
    return retention_ms(bootstrap, topic) == value


def test_topics_get_the_retention_set_and_setup_changes_it_on_existing_ones(
    stack: EmbeddedStack,
) -> None:
    if stack.broker.name != "apache":
        pytest.skip("Tansu has no DescribeConfigs/IncrementalAlterConfigs")
    env = scenario_env(stack.env(), PEDIDOS_RETENTION_MS="3600000")
    settings = prepare(env)
    for topic in setup.topic_names(settings):
        assert retention_ms(settings.kafka_bootstrap_servers, topic) == "3600000"

    longer = load_settings(
        **{key.lower(): value for key, value in {**env, "PEDIDOS_RETENTION_MS": "7200000"}.items()}
    )
    outcome = setup.create_topics(longer)
    assert set(outcome.values()) == {"exists, retention.ms=7200000"}
    # The controller applies the change; brokers learn it a moment later.
    for topic in setup.topic_names(settings):
        wait_for(
            partial(has_retention, settings.kafka_bootstrap_servers, topic, "7200000"),
            15,
            f"{topic} retention.ms=7200000",
        )


def test_documents_of_orders_older_than_the_retention_are_deleted(stack: EmbeddedStack) -> None:
    env = scenario_env(stack.env(), ELASTICSEARCH_RETENTION_DAYS="30")
    settings = prepare(env)
    now = datetime.now(UTC)
    with Elasticsearch(settings.elasticsearch_url) as es:
        for order_id, age in (("viejo", 40), ("reciente", 2)):
            accepted = (now - timedelta(days=age)).isoformat()
            es.index(
                index=settings.elasticsearch_orders_index,
                id=order_id,
                document={"order_id": order_id, "accepted_at": accepted},
                refresh=True,
            )
            es.index(
                index=settings.elasticsearch_events_index,
                id=f"{order_id}:Procesando",
                document={"order_id": order_id, "accepted_at": accepted, "state": "Procesando"},
                refresh=True,
            )
        deleted = setup.delete_expired_documents(settings, es)
        assert deleted == {
            settings.elasticsearch_events_index: 1,
            settings.elasticsearch_orders_index: 1,
        }
        left = es.search(index=settings.elasticsearch_orders_index, query={"match_all": {}})
        assert [hit["_id"] for hit in left["hits"]["hits"]] == ["reciente"]
