"""CreateOrder against a real producer process and the embedded Kafka broker."""

from __future__ import annotations

import json
import queue
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from admin import setup
from devkit.credentials import producer_channel
from devkit.net import free_port
from devkit.orders import order_request
from devkit.processes import Services
from devkit.stack import EmbeddedStack, StackPorts
from devkit.topics import read_topic
from devkit.waiting import wait_for
from pedidos.runtime.config import load_settings
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from pedidos.wire.records import header_value

pytestmark = pytest.mark.integration


def stub(address: str) -> orders_pb2_grpc.OrderServiceStub:
    return orders_pb2_grpc.OrderServiceStub(producer_channel(address))


def test_an_order_is_published_once_keyed_by_its_id(services: Services) -> None:
    producer = services.producer()
    env = services.env
    response = stub(env["PRODUCER_ADDRESS"]).CreateOrder(
        order_request(), timeout=10, metadata=(("x-correlation-id", "corr-42"),)
    )
    assert response.state == orders_pb2.ORDER_STATE_PROCESANDO
    assert response.accepted_at.seconds > 0

    (record,) = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 1)
    key, value, headers = record
    assert key == response.order_id.encode()
    payload = json.loads(value or b"")
    assert payload["schema"] == "pedidos.order"
    assert payload["version"] == 1
    assert payload["order_id"] == response.order_id
    assert payload["order"]["price"] == {"amount_minor": 649_990, "currency": "CLP"}
    assert payload["order"]["customer_email"] == "comprador@example.cl"
    assert header_value(headers, "content-type") == "application/json"
    assert header_value(headers, "pedidos-schema") == "pedidos.order.v1"
    assert header_value(headers, "correlation-id") == "corr-42"
    # The access line, written once the answer is on its way, names the customer masked.
    producer.wait_log("order accepted", timeout=10)
    (line,) = [json.loads(x) for x in producer.log().splitlines() if '"order accepted"' in x]
    assert (line["order_id"], line["customer"], line["correlation_id"]) == (
        response.order_id,
        "c***@example.cl",
        "corr-42",
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"customer_email": "not-an-email"}, "customer_email"),
        ({"customer_email": "a@b.cl\r\nBcc: x@y.z"}, "customer_email"),
        ({"price": orders_pb2.Money(amount_minor=-100)}, "price.amount_minor"),
        ({"price": orders_pb2.Money(amount_minor=0)}, "price.amount_minor"),
        ({"price": orders_pb2.Money(currency_code="BTC", amount_minor=5)}, "price.currency_code"),
        ({"product_name": ""}, "product_name"),
        ({"bank": "x" * 5000}, "bank"),
        ({"payment_gateway": 99}, "payment_gateway"),
        ({"card_brand": orders_pb2.CARD_BRAND_UNSPECIFIED}, "card_brand"),
    ],
)
def test_invalid_orders_are_rejected_naming_the_field_and_never_published(
    services: Services, overrides: dict[str, Any], field: str
) -> None:
    services.producer()
    env = services.env
    with pytest.raises(grpc.RpcError) as caught:
        stub(env["PRODUCER_ADDRESS"]).CreateOrder(order_request(**overrides), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(field)
    # A valid order afterwards is the only record: the rejected one never reached the topic.
    ok = stub(env["PRODUCER_ADDRESS"]).CreateOrder(order_request(), timeout=10)
    records = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 1)
    assert [r[0] for r in records] == [ok.order_id.encode()]


def test_the_same_idempotency_key_yields_one_order(services: Services) -> None:
    services.producer()
    env = services.env
    client = stub(env["PRODUCER_ADDRESS"])
    request = order_request(key="retry-me-1")
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: client.CreateOrder(request, timeout=10), range(4)))
    responses.append(client.CreateOrder(request, timeout=10))
    assert len({r.order_id for r in responses}) == 1
    records = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 1, settle_s=2)
    assert len(records) == 1

    changed = order_request(key="retry-me-1", product_name="Reloj Inteligente")
    with pytest.raises(grpc.RpcError) as caught:
        client.CreateOrder(changed, timeout=10)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_remembered_keys_are_bounded_and_a_forgotten_key_keeps_its_order_id(
    services: Services,
) -> None:
    services.producer(PRODUCER_IDEMPOTENCY_KEYS=2)
    env = services.env
    client = stub(env["PRODUCER_ADDRESS"])
    first, second, third = (order_request(key=f"clave-{n}") for n in range(3))
    ids = [client.CreateOrder(r, timeout=10).order_id for r in (first, second, third)]
    # `first` was evicted by `third`: republished, with the same id (collapses downstream);
    # `third` is still remembered: answered from memory, nothing republished.
    assert client.CreateOrder(first, timeout=10).order_id == ids[0]
    assert client.CreateOrder(third, timeout=10).order_id == ids[2]
    records = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 4, settle_s=2)
    keys = sorted((key or b"").decode() for key, _, _ in records)
    assert keys == sorted([ids[0], ids[0], ids[1], ids[2]])


def test_health_and_reflection_answer(services: Services) -> None:
    services.producer()
    channel = producer_channel(services.env["PRODUCER_ADDRESS"])
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "pedidos.v1.OrderService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"pedidos.v1.OrderService", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("tied", [False, True], ids=["alone", "tethered"])
def test_sigusr1_logs_every_threads_stack_and_the_service_goes_on(
    pipeline_env: dict[str, str], tmp_path: Path, tied: bool
) -> None:
    """What the chaos suite asks of a stalled consumer: where each thread waits. Tethered, the
    signal reaches the tether too, which must not die of it."""
    services = Services(pipeline_env, tmp_path, tied=tied)
    try:
        producer = services.producer()
        producer.log_stacks()
        # Threads one by one, the one the signal interrupted last: the main thread, at its start.
        producer.wait_log(" in run_service", timeout=10)
        assert producer.log().count("(most recent call first)") > 3  # gRPC's, Kafka's threads
        assert producer.running
        health = health_pb2_grpc.HealthStub(producer_channel(services.env["PRODUCER_ADDRESS"]))
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        services.cleanup()


def test_broker_down_gives_unavailable_within_the_deadline_then_recovers(
    services: Services, tmp_path
) -> None:
    kafka_port = free_port()
    env_overrides = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}", "GRPC_DEADLINE_S": "3"}
    services.producer(**env_overrides)  # starts and reports healthy with no broker at all
    client = stub(services.env["PRODUCER_ADDRESS"])
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        client.CreateOrder(order_request(key="while-down"), timeout=5)
    elapsed = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "retry with the same idempotency_key" in (caught.value.details() or "")
    assert elapsed < 5

    broker = EmbeddedStack(
        tmp_path / "late-broker",
        StackPorts(kafka_port, free_port(), free_port()),
        tied_to_parent=True,
    )
    broker.start("kafka")
    try:
        # A new broker has none of the topics (Apache Kafka does not create them on first use).
        env = {**services.env, **env_overrides}
        setup.create_topics(load_settings(**{k.lower(): v for k, v in env.items()}))
        response = wait_for(
            lambda: _try_create(client), 60, "producer to reach the new broker", 0.5
        )
        assert response.order_id
    finally:
        broker.stop("kafka")


def _try_create(client: orders_pb2_grpc.OrderServiceStub) -> orders_pb2.CreateOrderResponse | None:
    try:
        return client.CreateOrder(order_request(), timeout=5)
    except grpc.RpcError:
        return None


def test_sigterm_drains_in_flight_calls_and_loses_no_accepted_order(services: Services) -> None:
    producer = services.producer()
    env = services.env
    client = stub(env["PRODUCER_ADDRESS"])
    accepted: list[str] = []
    refused: list[grpc.StatusCode] = []
    lock = threading.Lock()

    def send(_: int) -> None:
        try:
            response = client.CreateOrder(order_request(), timeout=10)
            with lock:
                accepted.append(response.order_id)
        except grpc.RpcError as exc:
            with lock:
                refused.append(exc.code())

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(send, i) for i in range(400)]
        wait_for(lambda: len(accepted) >= 50, 20, "some orders accepted")
        producer.signal(signal.SIGTERM)
        for future in futures:
            future.result()
    assert producer.process is not None
    assert producer.process.wait(20) == 0
    # Calls gRPC had queued but not started are CANCELLED at shutdown, later ones UNAVAILABLE:
    # both are safe to retry with the same key. Every call got an answer.
    assert set(refused) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    assert len(accepted) + len(refused) == 400
    records = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], len(accepted))
    on_topic = {key.decode() for key, _, _ in records if key}
    assert set(accepted) <= on_topic
    assert "producer stopped" in producer.log()


def test_while_sigterm_drains_health_is_not_serving_and_a_call_begun_before_completes(
    services: Services,
) -> None:
    producer = services.producer()
    env = services.env
    address = env["PRODUCER_ADDRESS"]
    channel = producer_channel(address)
    # A load balancer's view: a health watch, open before the signal.
    health = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service="pedidos.v1.OrderService"), timeout=60
    )
    assert next(health).status == health_pb2.HealthCheckResponse.SERVING
    # A CreateOrders stream begun before the signal and fed orders after it.
    outbox: queue.Queue[orders_pb2.CreateOrderRequest | None] = queue.Queue()

    def requests() -> Iterator[orders_pb2.CreateOrderRequest]:
        while (request := outbox.get()) is not None:
            yield request

    stream = orders_pb2_grpc.OrderServiceStub(channel).CreateOrders(requests(), timeout=60)
    outbox.put(order_request())
    results = [next(stream)]  # answered: the call is in flight on the server

    producer.signal(signal.SIGTERM)
    assert next(health).status == health_pb2.HealthCheckResponse.NOT_SERVING
    health.cancel()
    producer.wait_log("producer stopping: draining in-flight calls", timeout=10)
    # Still draining (the stream is open): a new health check is refused, never SERVING.
    assert _health_check(address) == grpc.StatusCode.UNAVAILABLE
    assert producer.running
    for _ in range(3):
        outbox.put(order_request())
    results += [next(stream) for _ in range(3)]
    outbox.put(None)
    assert list(stream) == []
    assert stream.code() == grpc.StatusCode.OK
    assert [r.WhichOneof("outcome") for r in results] == ["accepted"] * 4

    assert producer.process is not None
    assert producer.process.wait(20) == 0
    records = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 4)
    assert sorted(key.decode() for key, _, _ in records if key) == sorted(
        r.accepted.order_id for r in results
    )


def _health_check(address: str) -> grpc.StatusCode | int:
    """The serving status a new health check gets, or the code it is refused with."""
    with producer_channel(address) as channel:
        try:
            return (
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                .status
            )
        except grpc.RpcError as exc:
            return exc.code()
