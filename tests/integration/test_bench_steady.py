"""bench 10 (steady load) on the embedded stack: orders go out at the steady rate, the figure is
taken only once every one of them is Finalizado, and it is the consumer's CPU per order."""

from __future__ import annotations

from elasticsearch import Elasticsearch

from bench.figures import Figure
from bench.logscan import TransitionTail
from bench.steady import STEADY_RATE, measure_steady
from devkit.processes import Services

ORDERS = 40


def test_the_figure_is_taken_once_every_order_is_finalizado(
    services: Services, pipeline_env: dict[str, str]
) -> None:
    services.producer()
    consumer = services.consumer(STAGE_DELAY_MIN_S="0", STAGE_DELAY_MAX_S="0")
    figure = Figure("steady.consumer_cpu", "10 Steady load", "test", "ms")
    tail = TransitionTail(consumer.log_path)
    measure_steady(figure, pipeline_env["GRPC_LISTEN"], tail, consumer.pid, ORDERS)
    assert figure.value is not None
    assert figure.value > 0
    # Sent at the rate, not at once: 40 orders at 40/s take about a second.
    assert figure.details["sent_s"] >= (ORDERS - 1) / STEADY_RATE * 0.95
    with Elasticsearch(pipeline_env["ELASTICSEARCH_URL"]) as es:
        index = pipeline_env["ELASTICSEARCH_ORDERS_INDEX"]
        es.indices.refresh(index=index)
        done = es.count(index=index, query={"term": {"state": "Finalizado"}})["count"]
    assert done == ORDERS
