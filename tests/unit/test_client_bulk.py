"""send_bulk over real gRPC against a fake CreateOrders: the window, results out of order,
per-order errors and a stream that breaks."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from client.bulk import BulkReport, send_bulk
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from tests.requests import order_request
from tests.support import start_order_service


class FakeBulkService(orders_pb2_grpc.OrderServiceServicer):
    """Answers each order after a random delay (so out of order); product "bad" is rejected;
    after `break_after` orders the stream fails with UNAVAILABLE."""

    def __init__(self, break_after: int | None = None) -> None:
        self.break_after = break_after
        self.outstanding = 0
        self.max_outstanding = 0
        self.rng = random.Random(3)

    async def CreateOrders(
        self,
        request_iterator: AsyncIterator[orders_pb2.CreateOrderRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        results: asyncio.Queue[orders_pb2.CreateOrderResult | None] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()

        async def settle(index: int, request: orders_pb2.CreateOrderRequest) -> None:
            await asyncio.sleep(self.rng.uniform(0, 0.01))
            if request.order.product_name == "bad":
                result = orders_pb2.CreateOrderResult(
                    index=index,
                    error=orders_pb2.OrderError(
                        code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                        message="product_name: must not be empty",
                    ),
                )
            else:
                result = orders_pb2.CreateOrderResult(
                    index=index,
                    accepted=orders_pb2.CreateOrderResponse(
                        order_id=request.idempotency_key, state=orders_pb2.ORDER_STATE_PROCESANDO
                    ),
                )
            await results.put(result)

        async def read() -> None:
            index = 0
            async for request in request_iterator:
                if index == self.break_after:
                    await asyncio.sleep(0.05)
                    await results.put(None)  # the writer aborts the call
                    return
                self.outstanding += 1
                self.max_outstanding = max(self.max_outstanding, self.outstanding)
                task = asyncio.create_task(settle(index, request))
                pending.add(task)
                task.add_done_callback(pending.discard)
                index += 1
            await asyncio.gather(*pending)
            await results.put(None)

        reader = asyncio.create_task(read())
        while (result := await results.get()) is not None:
            self.outstanding -= 1
            await context.write(result)
        await reader
        if self.break_after is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "producer going away")


def run_bulk(
    service: FakeBulkService, requests: list[orders_pb2.CreateOrderRequest], window: int
) -> BulkReport:
    async def run() -> BulkReport:
        server, address = await start_order_service(service)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                return await send_bulk(channel, requests, window, timeout_s=30)
        finally:
            await server.stop(None)

    return asyncio.run(run())


def test_every_result_is_matched_to_its_request_and_the_window_holds() -> None:
    requests = [
        order_request(key=str(uuid.uuid4()), **({"product_name": "bad"} if i % 7 == 0 else {}))
        for i in range(300)
    ]
    service = FakeBulkService()
    report = run_bulk(service, requests, window=16)

    assert report.stream_error is None
    assert report.sent == 300
    assert report.unanswered == 0
    bad = [i for i in range(300) if i % 7 == 0]
    assert [e.index for e in report.errors] == bad
    assert {e.code for e in report.errors} == {grpc.StatusCode.INVALID_ARGUMENT}
    assert report.order_ids() == [r.idempotency_key for i, r in enumerate(requests) if i % 7]
    assert service.max_outstanding <= 16
    assert report.rate_per_s > 0


def test_a_broken_stream_is_reported_with_what_was_answered() -> None:
    requests = [order_request(key=str(uuid.uuid4())) for _ in range(100)]
    report = run_bulk(FakeBulkService(break_after=40), requests, window=8)

    assert report.stream_error == grpc.StatusCode.UNAVAILABLE
    assert report.stream_error_message == "producer going away"
    # Only results that arrived count as accepted; the rest are unknown, never successes.
    assert set(report.accepted) <= set(range(41))
    assert report.unanswered == report.sent - len(report.accepted)
    assert report.unanswered > 0


def test_the_window_must_allow_one_order() -> None:
    async def run() -> BulkReport:
        async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
            return await send_bulk(channel, [], 0)

    with pytest.raises(ValueError, match="window"):
        asyncio.run(run())
