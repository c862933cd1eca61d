"""Every aggregation the Kibana dashboard needs runs on real pipeline data in the embedded ES.

Kibana itself cannot run here; the Lens columns of admin/kibana/pedidos.ndjson are translated to
the Elasticsearch aggregations Kibana would send. Percentiles are the one operation noida-db
lacks, so they are checked only on real Elasticsearch (PEDIDOS_TEST_BACKEND=docker).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from devkit.credentials import producer_channel
from devkit.inbox import Inbox
from devkit.indices import search_docs
from devkit.orders import order_request
from devkit.processes import Services
from devkit.stack import EmbeddedStack
from devkit.waiting import wait_for
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from tests.conftest import REJECTED_DOMAIN

pytestmark = pytest.mark.e2e

NDJSON = Path(__file__).resolve().parents[2] / "admin" / "kibana" / "pedidos.ndjson"
UNSUPPORTED_HERE = {"percentile"} if os.environ.get("PEDIDOS_TEST_BACKEND") != "docker" else set()
REGIONS = ["Región del Biobío", "Región de Valparaíso", "Región Metropolitana"]
GATEWAYS = [orders_pb2.PAYMENT_GATEWAY_MERCADO_PAGO, orders_pb2.PAYMENT_GATEWAY_STRIPE]
PRODUCTS = ["Laptop HP", "Silla Gamer", "Audífonos", "Monitor 27"]


def _kql_term(query: str) -> dict[str, Any]:
    match = re.fullmatch(r'\s*([\w.@]+)\s*:\s*"([^"]*)"\s*', query)
    assert match, f'the test understands only `field : "value"` filters, not {query!r}'
    return {"term": {match.group(1): match.group(2)}}


def _metric(column: dict[str, Any]) -> dict[str, Any] | None:
    op = column["operationType"]
    agg: dict[str, Any]
    if op == "count":
        agg = {}  # a bucket's doc_count, or a filter agg's doc_count
    elif op == "average":
        agg = {"avg": {"field": column["sourceField"]}}
    elif op == "percentile":
        agg = {
            "percentiles": {
                "field": column["sourceField"],
                "percents": [column["params"]["percentile"]],
            }
        }
    else:
        raise AssertionError(f"unknown Lens operation {op}")
    if column.get("filter"):
        return {
            "filter": _kql_term(column["filter"]["query"]),
            **({"aggs": {"m": agg}} if agg else {}),
        }
    return agg or None


def lens_to_queries() -> list[tuple[str, str, dict[str, Any], list[str]]]:
    """(visualization id, data view id, aggregation body, operations) for every Lens layer."""
    out = []
    for line in NDJSON.read_text().splitlines():
        obj = json.loads(line)
        if obj["type"] != "lens":
            continue
        refs = {r["name"]: r["id"] for r in obj["references"]}
        layers = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
        for layer_id, layer in layers.items():
            data_view = refs[f"indexpattern-datasource-layer-{layer_id}"]
            columns = [layer["columns"][c] for c in layer["columnOrder"]]
            operations = [c["operationType"] for c in columns]
            metrics: dict[str, Any] = {}
            for i, column in enumerate(c for c in columns if not c["isBucketed"]):
                if column["operationType"] in UNSUPPORTED_HERE:
                    continue
                metric = _metric(column)
                if metric:
                    metrics[f"metric{i}"] = metric
            body: dict[str, Any] = metrics
            for column in reversed([c for c in columns if c["isBucketed"]]):
                if column["operationType"] == "date_histogram":
                    interval = column["params"].get("interval", "auto")
                    bucket = {
                        "date_histogram": {
                            "field": column["sourceField"],
                            "fixed_interval": "1m" if interval == "auto" else interval,
                        }
                    }
                else:
                    assert column["operationType"] == "terms"
                    bucket = {
                        "terms": {
                            "field": column["sourceField"],
                            "size": column["params"].get("size", 10),
                        }
                    }
                body = {"bucket": {**bucket, **({"aggs": body} if body else {})}}
            out.append((obj["id"], data_view, body, operations))
    return out


def test_every_dashboard_aggregation_runs_on_pipeline_data(
    services: Services, stack: EmbeddedStack
) -> None:
    services.producer()
    services.consumer()
    env = services.env
    client = orders_pb2_grpc.OrderServiceStub(producer_channel(env["PRODUCER_ADDRESS"]))
    # Varied regions, gateways and products, so each breakdown has several exact buckets.
    requests = [
        order_request(
            shipping_region=REGIONS[i % len(REGIONS)],
            payment_gateway=GATEWAYS[i % len(GATEWAYS)],
            product_name=PRODUCTS[i % len(PRODUCTS)],
        )
        for i in range(8)
    ]
    requests.append(order_request(customer_email=f"nadie@{REJECTED_DOMAIN}"))
    order_ids = [client.CreateOrder(r, timeout=10).order_id for r in requests]
    wait_for(
        lambda: (
            len(search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_EVENTS_INDEX"], order_ids))
            == 5 * len(order_ids)
        ),
        90,
        "every event document",
        0.5,
    )
    inbox = Inbox(stack.maildir)
    wait_for(lambda: sum(map(len, inbox.states_by_order(order_ids).values())) == 40, 30, "e-mails")
    # Current documents are written in batches after the events: wait until all are final.
    wait_for(
        lambda: (
            [
                d["state"]
                for d in search_docs(
                    env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_ORDERS_INDEX"], order_ids
                )
            ]
            == ["Finalizado"] * len(order_ids)
        ),
        30,
        "every current document at Finalizado",
        0.2,
    )
    indices = {
        "pedidos-events-dataview": env["ELASTICSEARCH_EVENTS_INDEX"],
        "pedidos-orders-dataview": env["ELASTICSEARCH_ORDERS_INDEX"],
    }
    es = Elasticsearch(env["ELASTICSEARCH_URL"])
    es.indices.refresh(index=list(indices.values()))
    results = {}
    ran_operations: set[str] = set()
    for vis_id, data_view, aggs, operations in lens_to_queries():
        response = es.search(
            index=indices[data_view], size=0, aggs=aggs or None, track_total_hits=True
        )
        results[vis_id] = response
        ran_operations |= set(operations) - UNSUPPORTED_HERE
    es.close()
    assert ran_operations >= {"date_histogram", "terms", "count", "average"}

    states_over_time = results["pedidos-lens-states-over-time"]["aggregations"]["bucket"]["buckets"]
    per_state: dict[str, int] = {}
    for minute in states_over_time:
        for state in minute["bucket"]["buckets"]:
            per_state[state["key"]] = per_state.get(state["key"], 0) + state["doc_count"]
    assert per_state == dict.fromkeys(
        ["Procesando", "Preparación", "Enviado", "Entregado", "Finalizado"], len(order_ids)
    )

    current = results["pedidos-lens-current-state"]["aggregations"]["bucket"]["buckets"]
    assert {b["key"]: b["doc_count"] for b in current} == {"Finalizado": len(order_ids)}

    durations = results["pedidos-lens-stage-duration"]["aggregations"]["bucket"]["buckets"]
    assert len(durations) == 5
    assert all(b["metric0"]["value"] is not None and b["metric0"]["value"] >= 0 for b in durations)
    # Stages after the first include the simulated delay (STAGE_DELAY_MIN_S=0.05 in tests).
    assert all(b["metric0"]["value"] >= 40 for b in durations if b["key"] != "Procesando")

    throughput = results["pedidos-lens-throughput"]["aggregations"]["bucket"]["buckets"]
    assert sum(b["metric0"]["doc_count"] for b in throughput) == len(order_ids)

    # One order, one count (the orders index), under the value the order was sent with.
    expected = {
        "pedidos-lens-by-region": Counter(r.order.shipping_region for r in requests),
        "pedidos-lens-by-gateway": Counter(
            orders_pb2.PaymentGateway.Name(r.order.payment_gateway).removeprefix("PAYMENT_GATEWAY_")
            for r in requests
        ),
        "pedidos-lens-by-product": Counter(r.order.product_name for r in requests),
    }
    for vis_id, counts in expected.items():
        buckets = results[vis_id]["aggregations"]["bucket"]["buckets"]
        assert {b["key"]: b["doc_count"] for b in buckets} == counts, vis_id

    rejected = results["pedidos-lens-email-failures"]["aggregations"]["metric0"]["doc_count"]
    assert rejected == 5
