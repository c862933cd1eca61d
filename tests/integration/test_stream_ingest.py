"""CreateOrders: many orders on one stream, each with CreateOrder's guarantees (real producer,
embedded Kafka)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import grpc
import pytest

from client.cli import main
from client.stream import StreamReport, send_stream
from devkit.credentials import aio_producer_channel, producer_channel
from devkit.net import free_port
from devkit.orders import order_request
from devkit.processes import Services
from devkit.topics import read_topic
from pedidos.domain.order import new_order_id
from pedidos.v1 import orders_pb2, orders_pb2_grpc

pytestmark = pytest.mark.integration


def stream(
    address: str,
    requests: Sequence[orders_pb2.CreateOrderRequest],
    window: int = 500,
    metadata: Sequence[tuple[str, str]] | None = None,
) -> StreamReport:
    async def run() -> StreamReport:
        async with aio_producer_channel(address) as channel:
            return await send_stream(channel, requests, window, timeout_s=120, metadata=metadata)

    return asyncio.run(run())


def test_two_thousand_orders_in_one_stream_are_accepted_and_published_once(
    services: Services,
) -> None:
    services.producer()
    env = services.env
    requests = [
        order_request(key=f"bulk-{i}", customer_email=f"cliente{i}@example.cl") for i in range(2000)
    ]
    report = stream(env["PRODUCER_ADDRESS"], requests, metadata=[("x-correlation-id", "lote-1")])

    assert report.stream_error is None
    assert report.sent == 2000
    assert report.errors == ()
    assert sorted(report.accepted) == list(range(2000))
    # Each result is its own request's order: the id follows from (e-mail, idempotency key).
    expected = [
        new_order_id(r.order.customer_email, r.idempotency_key, env["ORDER_ID_SECRET"].encode())
        for r in requests
    ]
    assert report.order_ids() == expected

    records = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 2000, timeout=60)
    keys = [key.decode() for key, _, _ in records if key]
    assert len(records) == 2000
    assert sorted(keys) == sorted(expected)
    for key, value, headers in records[:50]:
        payload = json.loads(value or b"")
        assert payload["order_id"] == (key or b"").decode()
        assert ("correlation-id", b"lote-1") in headers

    # The same keys again (a client retrying the whole stream): the same ids, nothing new.
    again = stream(env["PRODUCER_ADDRESS"], requests[:300])
    assert again.order_ids() == expected[:300]
    records = read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 2000, timeout=60, settle_s=2
    )
    assert len(records) == 2000


def test_invalid_orders_get_their_own_error_and_the_stream_goes_on(services: Services) -> None:
    services.producer()
    env = services.env
    invalid: dict[int, tuple[dict[str, Any], str]] = {
        3: ({"customer_email": "no-es-un-correo"}, "customer_email"),
        10: ({"price": orders_pb2.Money(amount_minor=0)}, "price.amount_minor"),
        11: ({"product_name": ""}, "product_name"),
        57: ({"card_brand": orders_pb2.CARD_BRAND_UNSPECIFIED}, "card_brand"),
        99: ({"payment_gateway": 42}, "payment_gateway"),
    }
    requests = [
        order_request(**invalid[i][0]) if i in invalid else order_request() for i in range(100)
    ]
    requests.append(order_request(key="x" * 129))  # index 100: an idempotency key too long
    requests.append(order_request(key="shared-key"))  # 101
    requests.append(order_request(key="shared-key"))  # 102: the same order again
    requests.append(order_request(key="shared-key", bank="BCI"))  # 103: the key reused
    report = stream(env["PRODUCER_ADDRESS"], requests, window=16)

    assert report.stream_error is None
    errors = {error.index: error for error in report.errors}
    assert sorted(errors) == [*sorted(invalid), 100, 103]
    for index, (_, field) in invalid.items():
        assert errors[index].code == grpc.StatusCode.INVALID_ARGUMENT
        assert errors[index].message.startswith(field)
    assert errors[100].code == grpc.StatusCode.INVALID_ARGUMENT
    assert errors[100].message.startswith("idempotency_key")
    assert errors[103].code == grpc.StatusCode.ALREADY_EXISTS
    assert report.accepted[101] == report.accepted[102]
    assert len(report.accepted) == 104 - 7

    published = set(report.accepted.values())
    records = read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], len(published), settle_s=2
    )
    assert sorted(key.decode() for key, _, _ in records if key) == sorted(published)


def test_broker_down_gives_unavailable_per_order_never_success(services: Services) -> None:
    services.producer(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", GRPC_DEADLINE_S="2")
    requests = [order_request() for _ in range(50)]
    report = stream(services.env["PRODUCER_ADDRESS"], requests, window=20)

    assert report.stream_error is None
    assert report.accepted == {}
    assert sorted(error.index for error in report.errors) == list(range(50))
    assert {error.code for error in report.errors} == {grpc.StatusCode.UNAVAILABLE}
    assert all("retry with the same idempotency_key" in e.message for e in report.errors)


def test_create_order_and_create_orders_share_idempotency_keys(services: Services) -> None:
    services.producer()
    env = services.env
    request = order_request(key="mixto-1")
    single = orders_pb2_grpc.OrderServiceStub(
        producer_channel(env["PRODUCER_ADDRESS"])
    ).CreateOrder(request, timeout=10)
    report = stream(env["PRODUCER_ADDRESS"], [request, request])
    assert report.order_ids() == [single.order_id] * 2
    records = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 1, settle_s=2)
    assert [key for key, _, _ in records] == [single.order_id.encode()]


def test_the_command_line_sends_on_one_stream_when_asked(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    services.producer()
    env = services.env
    argv = ["--count", "1500", "--email", "cliente@example.cl", "--yes", "--json"]

    assert main([*argv, "--address", env["PRODUCER_ADDRESS"], "--stream", "500"]) == 0

    summary = json.loads(capsys.readouterr().out)
    assert (summary["sent"], summary["accepted"], summary["rejected"], summary["failed"]) == (
        1500,
        1500,
        0,
        0,
    )
    records = read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 1500, timeout=60, settle_s=2
    )
    assert sorted((key or b"").decode() for key, _, _ in records) == sorted(summary["order_ids"])
