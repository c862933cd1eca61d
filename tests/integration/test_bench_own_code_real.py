"""bench 5d with real adapters: the consumer's graph over the stack's Kafka, Elasticsearch and
SMTP sink walks every order once, and the counts the figure is checked by come from what the
servers accepted."""

from __future__ import annotations

import asyncio

import pytest
from elasticsearch import Elasticsearch

from bench.own_code import ADAPTERS, walk_orders
from pedidos.domain.states import ALL_STATES

ORDERS = 30


def test_every_order_walks_once_through_the_real_adapters(
    pipeline_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**pipeline_env, "STAGE_DELAY_MAX_S": "0", "STAGE_DELAY_MIN_S": "0"}.items():
        monkeypatch.setenv(name, value)
    result = asyncio.run(walk_orders(ORDERS, timeout_s=120, real=frozenset(ADAPTERS)))
    expected = ORDERS * len(ALL_STATES)
    assert result["real"] == sorted(ADAPTERS)
    assert result["emails"] == result["events"] == expected
    assert result["cpu_ms_per_order"] > 0
    with Elasticsearch(pipeline_env["ELASTICSEARCH_URL"]) as es:
        index = pipeline_env["ELASTICSEARCH_EVENTS_INDEX"]
        es.indices.refresh(index=index)
        assert es.count(index=index)["count"] == expected
