"""The gRPC servicer only translates: each service refusal becomes the status code the README
promises, and results keep request order. Driven with a fake call context, no server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, TypeVar

import grpc
import pytest

from devkit.orders import order_request
from pedidos.ports import CorruptOrderDocument, PublishError
from pedidos.services.errors import Reason
from pedidos.services.intake import OrderIdSecrets, OrderIntake
from pedidos.services.tracking import OrderTracker, StateFanout
from pedidos.v1 import orders_pb2
from pedidos.wire.records import header_value
from producer.servicer import STATUS_CODES, OrderServicer
from tests.unit.fakes import FakeOrderLookup, FakePendingPublisher, FakePublisher

T = TypeVar("T")


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class FakeContext:
    """The parts of grpc.aio.ServicerContext the servicer uses; abort raises, as gRPC's does."""

    def __init__(self, correlation: str | None = None, time_left: float | None = 5.0) -> None:
        self.metadata = [] if correlation is None else [("x-correlation-id", correlation)]
        self.time_left = time_left

    def invocation_metadata(self) -> list[Any]:
        return [SimpleNamespace(key=k, value=v) for k, v in self.metadata]

    def time_remaining(self) -> float | None:
        return self.time_left

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), 10))


def servicer(
    publisher: FakePublisher | FakePendingPublisher | None = None,
    lookup: FakeOrderLookup | None = None,
) -> OrderServicer:
    fanout = StateFanout()
    return OrderServicer(
        OrderIntake(
            publisher or FakePublisher(),
            "Pedidos",
            remembered_keys=100,
            secrets=OrderIdSecrets(b"s" * 32),
        ),
        0.2,
        OrderTracker(lookup or FakeOrderLookup(), fanout, unknown_order_wait_s=0.05),
        fanout,
    )


def test_every_refusal_reason_has_the_status_code_the_readme_promises() -> None:
    assert STATUS_CODES == {
        Reason.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
        Reason.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
        Reason.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
        Reason.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
        Reason.CORRUPT: grpc.StatusCode.INTERNAL,
    }
    assert set(STATUS_CODES) == set(Reason)


def test_create_order_answers_after_the_ack_with_the_caller_s_correlation_id() -> None:
    async def scenario() -> tuple[orders_pb2.CreateOrderResponse, FakePublisher]:
        publisher = FakePublisher()
        request = order_request("k-1")
        response = await servicer(publisher).CreateOrder(request, FakeContext("corr-9"))  # type: ignore[arg-type]
        return response, publisher

    response, publisher = run(scenario)
    assert response.state == orders_pb2.ORDER_STATE_PROCESANDO
    assert response.accepted_at.seconds > 0
    ((_, key, _, headers),) = publisher.records
    assert key == response.order_id
    assert header_value(headers, "correlation-id") == "corr-9"


@pytest.mark.parametrize(
    ("publisher", "request_", "code", "starts"),
    [
        (FakePublisher, order_request(customer_email="nope"), "INVALID_ARGUMENT", "customer_email"),
        (FakePublisher, order_request("ü"), "INVALID_ARGUMENT", "idempotency_key"),
        (
            lambda: FakePublisher(PublishError("broker down")),
            order_request(),
            "UNAVAILABLE",
            "Kafka",
        ),
        (FakePendingPublisher, order_request(), "UNAVAILABLE", "Kafka did not acknowledge"),
    ],
)
def test_create_order_refusals(
    publisher: Callable[[], FakePublisher | FakePendingPublisher],
    request_: orders_pb2.CreateOrderRequest,
    code: str,
    starts: str,
) -> None:
    async def scenario() -> Aborted:
        with pytest.raises(Aborted) as caught:
            await servicer(publisher()).CreateOrder(request_, FakeContext(time_left=0.1))  # type: ignore[arg-type]
        return caught.value

    aborted = run(scenario)
    assert aborted.code.name == code
    assert aborted.details.startswith(starts)


def test_a_reused_key_is_already_exists() -> None:
    async def scenario() -> Aborted:
        service = servicer()
        await service.CreateOrder(order_request("k-1"), FakeContext())  # type: ignore[arg-type]
        with pytest.raises(Aborted) as caught:
            await service.CreateOrder(order_request("k-1", bank="Otro"), FakeContext())  # type: ignore[arg-type]
        return caught.value

    assert run(scenario).code is grpc.StatusCode.ALREADY_EXISTS


def test_a_batch_answers_each_order_in_request_order_with_its_own_code() -> None:
    async def scenario() -> tuple[
        orders_pb2.CreateOrderBatchResponse, orders_pb2.CreateOrderResponse
    ]:
        batch = orders_pb2.CreateOrderBatchRequest(
            orders=[
                order_request("a"),
                order_request("b", price=orders_pb2.Money(amount_minor=0)),
                order_request("a", bank="Otro"),
                order_request("a"),
            ]
        )
        service = servicer()
        response = await service.CreateOrderBatch(batch, FakeContext())  # type: ignore[arg-type]
        # The same key again, alone: answered as CreateOrder answers every order.
        replay = await service.CreateOrder(order_request("a"), FakeContext())  # type: ignore[arg-type]
        return response, replay

    response, replay = run(scenario)
    results = response.results
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert results[0].accepted == replay
    assert replay.order_id
    assert replay.state == orders_pb2.ORDER_STATE_PROCESANDO
    assert replay.accepted_at.seconds > 0
    assert results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert results[1].error.message.startswith("price.amount_minor")
    assert results[2].error.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert results[3].accepted == results[0].accepted
    assert [r.WhichOneof("outcome") for r in results] == ["accepted", "error", "error", "accepted"]


class CorruptLookup(FakeOrderLookup):
    async def find(self, order_id: str) -> None:
        raise CorruptOrderDocument(f"order document {order_id!r}: Enviado without Preparación")


def down() -> FakeOrderLookup:
    lookup = FakeOrderLookup()
    lookup.down = True
    return lookup


@pytest.mark.parametrize(
    ("lookup", "order_id", "code"),
    [
        (FakeOrderLookup, "abc", grpc.StatusCode.INVALID_ARGUMENT),
        (FakeOrderLookup, str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND),
        (down, str(uuid.uuid4()), grpc.StatusCode.UNAVAILABLE),
        (CorruptLookup, str(uuid.uuid4()), grpc.StatusCode.INTERNAL),
    ],
)
def test_get_order_refusals(
    lookup: Callable[[], FakeOrderLookup], order_id: str, code: grpc.StatusCode
) -> None:
    async def scenario() -> grpc.StatusCode:
        request = orders_pb2.GetOrderRequest(order_id=order_id)
        with pytest.raises(Aborted) as caught:
            await servicer(lookup=lookup()).GetOrder(request, FakeContext())  # type: ignore[arg-type]
        return caught.value.code

    assert run(scenario) is code


def test_watch_of_an_unknown_order_ends_not_found() -> None:
    async def scenario() -> grpc.StatusCode:
        request = orders_pb2.WatchOrderRequest(order_id=str(uuid.uuid4()))
        with pytest.raises(Aborted) as caught:
            async for _ in servicer().WatchOrder(request, FakeContext(time_left=None)):  # type: ignore[arg-type]
                pass
        return caught.value.code

    assert run(scenario) is grpc.StatusCode.NOT_FOUND
