"""`/metrics`, `/healthz` and `/readyz` of a real producer and consumer on the embedded stack:
scraped while orders flow and after, the figures match what happened (orders, e-mails, steps,
dead letters, lag back to 0), and readiness says no when the broker is away."""

from __future__ import annotations

import uuid

import grpc
import pytest
from confluent_kafka import Producer

from devkit import metrics
from devkit.credentials import producer_channel
from devkit.inbox import Inbox
from devkit.metrics import Samples, value
from devkit.net import free_port, http_get
from devkit.orders import order_request
from devkit.processes import Services
from devkit.stack import EmbeddedStack
from devkit.waiting import wait_for
from pedidos.v1 import orders_pb2_grpc
from tests.e2e.test_pipeline import wait_all_consumed, wait_all_emails

pytestmark = pytest.mark.e2e


def scrape(port: int) -> Samples:
    samples = metrics.scrape(port)
    assert samples, f"no /metrics on port {port}"
    return samples


def test_metrics_match_what_happened(services: Services, stack: EmbeddedStack) -> None:
    producer_port, consumer_port = free_port(), free_port()
    services.producer(METRICS_PORT=producer_port)
    services.consumer(METRICS_PORT=consumer_port, STAGE_DELAY_MIN_S=0.3, STAGE_DELAY_MAX_S=0.6)
    env = services.env
    stub = orders_pb2_grpc.OrderServiceStub(producer_channel(env["PRODUCER_ADDRESS"]))
    count = 12
    key = f"metrics-{uuid.uuid4()}"
    first = stub.CreateOrder(order_request(key), timeout=10)
    replay = stub.CreateOrder(order_request(key), timeout=10)
    assert replay.order_id == first.order_id
    order_ids = [first.order_id] + [
        stub.CreateOrder(order_request(), timeout=10).order_id for _ in range(count - 1)
    ]
    with pytest.raises(grpc.RpcError) as refused:
        stub.CreateOrder(order_request(customer_email="no-es-un-correo"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    keyless = orders_pb2_grpc.OrderServiceStub(grpc.insecure_channel(env["PRODUCER_ADDRESS"]))
    with pytest.raises(grpc.RpcError) as unauthenticated:
        keyless.CreateOrder(order_request(), timeout=10)
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    raw = Producer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    for garbage in (b"\xff not an order", b"{}"):
        raw.produce(env["PEDIDOS_TOPIC"], garbage, key=b"poison")
    assert raw.flush(10) == 0

    # While the orders walk: work in progress shows.
    def in_progress() -> Samples | None:
        samples = scrape(consumer_port)
        busy = value(samples, "pedidos_records_in_flight") and value(samples, "pedidos_open_orders")
        return samples if busy else None

    during = wait_for(in_progress, 30, "records in flight and open orders on /metrics", 0.05)
    assert value(during, "pedidos_steps_total", state="Finalizado", outcome="done") < count

    wait_all_emails(Inbox(stack.maildir), order_ids)
    wait_all_consumed(env)

    def all_finished() -> Samples | None:
        samples = scrape(consumer_port)
        done = value(samples, "pedidos_steps_total", state="Finalizado", outcome="done")
        return samples if done == count else None

    consumer = wait_for(all_finished, 20, "every order's last step counted")
    for state in ("Procesando", "Preparación", "Enviado", "Entregado", "Finalizado"):
        assert value(consumer, "pedidos_steps_total", state=state, outcome="done") == count, state
    assert value(consumer, "pedidos_emails_total", result="sent") == count * 5
    assert value(consumer, "pedidos_emails_total", result="rejected") == 0
    assert value(consumer, "pedidos_dead_letters_total", kind="record") == 2
    assert value(consumer, "pedidos_steps_total", state="unknown", outcome="dead_lettered") == 2
    assert value(consumer, "pedidos_step_phase_duration_seconds_count", phase="email") == count * 5
    assert value(consumer, "pedidos_order_duration_seconds_count") == count
    # Four stages of 0.3-0.6 s each: no order can finish faster than 1.2 s.
    assert value(consumer, "pedidos_order_duration_seconds_bucket", le="1.0") == 0
    # One state record per step, plus the two dead letters.
    states_sent = value(
        consumer,
        "messaging_client_sent_messages_total",
        messaging_destination_name=env["PEDIDOS_STATES_TOPIC"],
        error_type="",
    )
    assert states_sent == count * 5
    lag = {ls: v for (n, ls), v in consumer.items() if n == "kafka_consumer_group_lag"}
    topics = {dict(labels)["topic"] for labels in lag}
    assert topics == {env["PEDIDOS_TOPIC"], env["PEDIDOS_STATES_TOPIC"]}, "one consumer holds all"
    assert sum(lag.values()) == 0
    assert value(consumer, "pedidos_records_in_flight") == 0

    producer = scrape(producer_port)
    assert value(producer, "pedidos_orders_accepted_total") == count + 1  # the replay too
    assert value(producer, "pedidos_idempotent_replays_total") == 1
    assert value(producer, "pedidos_orders_refused_total", reason="invalid") == 1
    create = "pedidos.v1.OrderService/CreateOrder"
    calls = "rpc_server_call_duration_seconds_count"
    assert value(producer, calls, rpc_method=create, rpc_response_status_code="OK") == count + 1
    assert (
        value(producer, calls, rpc_method=create, rpc_response_status_code="INVALID_ARGUMENT") == 1
    )
    published = value(
        producer,
        "messaging_client_sent_messages_total",
        messaging_destination_name=env["PEDIDOS_TOPIC"],
    )
    assert published == count  # the replay published nothing

    for port in (producer_port, consumer_port):
        assert http_get(port, "/healthz") == (200, "ok\n")
        status, body = http_get(port, "/readyz")
        assert status == 200, body


def test_readiness_fails_while_the_broker_is_unreachable(services: Services) -> None:
    port = free_port()
    # A producer whose broker is nowhere: it starts and serves gRPC health, but is not ready.
    services.producer(METRICS_PORT=port, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    assert http_get(port, "/healthz") == (200, "ok\n")
    status, body = http_get(port, "/readyz")
    assert status == 503
    assert "unreachable" in body, body
    assert http_get(port, "/nada")[0] == 404
