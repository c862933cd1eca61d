"""CreateOrderBatch: many orders in one message, each with CreateOrder's guarantees (real
producer, embedded Kafka)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc
import pytest

from devkit.credentials import producer_channel
from devkit.net import free_port
from devkit.orders import order_request
from devkit.processes import Services
from devkit.topics import read_topic
from pedidos.domain.order import new_order_id
from pedidos.v1 import orders_pb2, orders_pb2_grpc

pytestmark = pytest.mark.integration


def send_batch(
    address: str,
    requests: Sequence[orders_pb2.CreateOrderRequest],
    timeout_s: float = 60,
    metadata: Sequence[tuple[str, str]] | None = None,
) -> orders_pb2.CreateOrderBatchResponse:
    with producer_channel(address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        response: orders_pb2.CreateOrderBatchResponse = stub.CreateOrderBatch(
            orders_pb2.CreateOrderBatchRequest(orders=requests),
            timeout=timeout_s,
            metadata=None if metadata is None else tuple(metadata),
        )
    return response


def test_batches_are_accepted_in_request_order_and_published_once(services: Services) -> None:
    services.producer()
    env = services.env
    requests = [
        order_request(key=f"lote-{i}", customer_email=f"cliente{i}@example.cl") for i in range(2500)
    ]
    expected = [
        new_order_id(r.order.customer_email, r.idempotency_key, env["ORDER_ID_SECRET"].encode())
        for r in requests
    ]
    ids: list[str] = []
    for start in range(0, 2500, 1000):
        response = send_batch(
            env["PRODUCER_ADDRESS"],
            requests[start : start + 1000],
            metadata=[("x-correlation-id", "lote-grande")],
        )
        assert [r.index for r in response.results] == list(range(len(response.results)))
        assert all(r.WhichOneof("outcome") == "accepted" for r in response.results)
        assert {r.accepted.state for r in response.results} == {orders_pb2.ORDER_STATE_PROCESANDO}
        ids += [r.accepted.order_id for r in response.results]
    assert ids == expected

    records = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 2500, timeout=60)
    assert sorted((key or b"").decode() for key, _, _ in records) == sorted(expected)
    for key, value, headers in records[:50]:
        assert json.loads(value or b"")["order_id"] == (key or b"").decode()
        assert ("correlation-id", b"lote-grande") in headers

    # The client retries a whole batch (say its call timed out): the same answers, nothing new.
    again = send_batch(env["PRODUCER_ADDRESS"], requests[:1000])
    assert [r.accepted.order_id for r in again.results] == expected[:1000]
    records = read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 2500, timeout=60, settle_s=2
    )
    assert len(records) == 2500


def test_invalid_orders_get_their_own_error_and_the_rest_are_accepted(
    services: Services,
) -> None:
    services.producer()
    env = services.env
    invalid: dict[int, tuple[dict[str, Any], str]] = {
        0: ({"customer_email": "no-es-un-correo"}, "customer_email"),
        7: ({"price": orders_pb2.Money(amount_minor=-5)}, "price.amount_minor"),
        8: ({"shipping_address": "Calle\x00Falsa 123"}, "shipping_address"),
        19: ({"payment_gateway": 42}, "payment_gateway"),
    }
    requests = [
        order_request(**invalid[i][0]) if i in invalid else order_request() for i in range(20)
    ]
    requests.append(order_request(key="clave-compartida"))  # 20
    requests.append(order_request(key="clave-compartida"))  # 21: the same order again
    requests.append(order_request(key="clave-compartida", bank="BCI"))  # 22: the key reused
    response = send_batch(env["PRODUCER_ADDRESS"], requests)

    outcomes = {r.index: r for r in response.results}
    assert sorted(outcomes) == list(range(23))
    errors = {i: r.error for i, r in outcomes.items() if r.WhichOneof("outcome") == "error"}
    assert sorted(errors) == [*sorted(invalid), 22]
    for index, (_, field) in invalid.items():
        assert errors[index].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert errors[index].message.startswith(field)
    assert errors[22].code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert outcomes[20].accepted.order_id == outcomes[21].accepted.order_id

    published = {r.accepted.order_id for r in response.results if r.HasField("accepted")}
    assert len(published) == 23 - 5 - 1
    records = read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], len(published), settle_s=2
    )
    assert sorted((key or b"").decode() for key, _, _ in records) == sorted(published)


def test_an_oversized_batch_is_refused_whole_and_nothing_is_published(
    services: Services,
) -> None:
    services.producer()
    env = services.env
    with pytest.raises(grpc.RpcError) as refused:
        send_batch(env["PRODUCER_ADDRESS"], [order_request() for _ in range(1001)])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 1000" in str(refused.value.details())
    # A valid batch afterwards: its order is the only record on the topic.
    after = send_batch(env["PRODUCER_ADDRESS"], [order_request()])
    records = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 1, settle_s=2)
    assert [key for key, _, _ in records] == [after.results[0].accepted.order_id.encode()]


def test_broker_down_gives_unavailable_per_order_before_the_deadline(services: Services) -> None:
    services.producer(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", GRPC_DEADLINE_S="2")
    response = send_batch(
        services.env["PRODUCER_ADDRESS"], [order_request() for _ in range(30)], timeout_s=4
    )
    assert [r.index for r in response.results] == list(range(30))
    assert {r.WhichOneof("outcome") for r in response.results} == {"error"}
    assert {r.error.code for r in response.results} == {grpc.StatusCode.UNAVAILABLE.value[0]}
    assert all("retry with the same idempotency_key" in r.error.message for r in response.results)
