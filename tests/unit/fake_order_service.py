"""One fake OrderService for the client's tests: it stands in only for the producer's business
logic, so the gRPC transport under test is real.

What it does with an order depends on its product name (`behaviour_by_product`, unknown names
are accepted), the same for CreateOrder, CreateOrderBatch and CreateOrders; WatchOrder behaves by
the order id's prefix (see WatchOrder); GetOrder answers from `orders`. It records every request
and the most calls, results or watches it had outstanding.
"""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import grpc

from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from pedidos.wire.proto_mapping import state_to_proto, timestamp
from tests.order_service import start_order_service

REJECTION = "price.amount_minor: must be greater than zero"
NOT_ACKED = "Kafka did not acknowledge the order; retry with the same idempotency_key"
ID_NAMESPACE = uuid.UUID("0b6e5c2a-8a51-4f4b-9d0e-3f1f4f3c9a10")

# Per order, by product name: accept; reject with INVALID_ARGUMENT; UNAVAILABLE on its first
# attempt only (flaky) or always (down); an unknown status number (odd); never answer (slow).
ACCEPT, REJECT, FLAKY, DOWN, ODD, SLOW = "accept", "reject", "flaky", "down", "odd", "slow"
BEHAVIOURS = {behaviour: behaviour for behaviour in (ACCEPT, REJECT, FLAKY, DOWN, ODD, SLOW)}
# WatchOrder by the order id's prefix: fine; flaky (breaks after the first change once); late
# (NOT_FOUND twice first); gone (INVALID_ARGUMENT); never (NOT_FOUND); gap (breaks after
# Procesando, and the order is at Entregado when watched again).
FINE, LATE, GONE, NEVER, GAP = "fine", "late", "gone", "never", "gap"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAR_BEYOND_ANY_DEADLINE_S = 5.0

# An order's answer: its order id, or the status number and message it is refused with.
_Answer = str | tuple[int, str]


def stamp(position: int) -> datetime:
    """When the fake's orders reached the state at `position`."""
    return START + timedelta(seconds=position + 1)


def change(order_id: str, state: OrderState) -> orders_pb2.OrderStateChange:
    return orders_pb2.OrderStateChange(
        order_id=order_id, state=state_to_proto(state), reached_at=timestamp(stamp(state.position))
    )


class FakeOrderService(orders_pb2_grpc.OrderServiceServicer):
    def __init__(
        self,
        behaviour_by_product: Mapping[str, str] | None = None,
        *,
        work_s: float = 0.01,
        failing_calls: int = 0,
        call_error: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        break_after: int | None = None,
    ) -> None:
        """`failing_calls`: the first CreateOrderBatch calls fail whole with `call_error`
        (DEADLINE_EXCEEDED by never answering). `break_after`: a CreateOrders stream fails with
        UNAVAILABLE after that many orders."""
        self.behaviour_by_product = dict(behaviour_by_product or {})
        self.work_s = work_s
        self.failing_calls = failing_calls
        self.call_error = call_error
        self.break_after = break_after
        self.access_checks = 0
        # Every CreateOrder/CreateOrderBatch request by idempotency key, as sent.
        self.received: defaultdict[str, list[bytes]] = defaultdict(list)
        self.accepted: dict[str, str] = {}
        self.emails: set[str] = set()
        self.batch_calls: list[list[str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.outstanding = 0
        self.max_outstanding = 0
        self.rng = random.Random(3)
        self.orders: dict[str, orders_pb2.Order] = {}
        self.watch_calls: Counter[str] = Counter()
        self.open = 0
        self.max_open = 0

    @property
    def attempts(self) -> Counter[str]:
        """CreateOrder/CreateOrderBatch attempts per idempotency key."""
        return Counter({key: len(sent) for key, sent in self.received.items()})

    def _receive(self, request: orders_pb2.CreateOrderRequest) -> None:
        self.received[request.idempotency_key].append(request.SerializeToString())
        self.emails.add(request.order.customer_email)

    def _behaviour(self, request: orders_pb2.CreateOrderRequest) -> str:
        return self.behaviour_by_product.get(request.order.product_name, ACCEPT)

    def _answer(self, request: orders_pb2.CreateOrderRequest) -> _Answer:
        """Decided once the request was received (flaky fails its first attempt only)."""
        key = request.idempotency_key
        behaviour = self._behaviour(request)
        if behaviour == REJECT:
            return grpc.StatusCode.INVALID_ARGUMENT.value[0], REJECTION
        if behaviour == DOWN or (behaviour == FLAKY and len(self.received[key]) == 1):
            return grpc.StatusCode.UNAVAILABLE.value[0], NOT_ACKED
        if behaviour == ODD:
            return 99, "no such code"
        order_id = str(uuid.uuid5(ID_NAMESPACE, key))
        self.accepted[key] = order_id
        return order_id

    @staticmethod
    def _result(index: int, answer: _Answer) -> orders_pb2.CreateOrderResult:
        if isinstance(answer, str):
            return orders_pb2.CreateOrderResult(
                index=index,
                accepted=orders_pb2.CreateOrderResponse(
                    order_id=answer, state=orders_pb2.ORDER_STATE_PROCESANDO
                ),
            )
        code, message = answer
        return orders_pb2.CreateOrderResult(
            index=index, error=orders_pb2.OrderError(code=code, message=message)
        )

    def _enter_call(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    async def CreateOrder(
        self, request: orders_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.CreateOrderResponse:
        self._enter_call()
        try:
            self._receive(request)
            await asyncio.sleep(self.work_s)
            if self._behaviour(request) == SLOW:
                await asyncio.sleep(FAR_BEYOND_ANY_DEADLINE_S)
            answer = self._answer(request)
            if not isinstance(answer, str):
                code, message = answer
                await context.abort(_status(code), message)
            return orders_pb2.CreateOrderResponse(
                order_id=answer, state=orders_pb2.ORDER_STATE_PROCESANDO
            )
        finally:
            self.in_flight -= 1

    async def CreateOrderBatch(
        self, request: orders_pb2.CreateOrderBatchRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.CreateOrderBatchResponse:
        if not request.orders:
            # The client's access check before it sends (client.connection): not an order call.
            self.access_checks += 1
            return orders_pb2.CreateOrderBatchResponse()
        self._enter_call()
        try:
            self.batch_calls.append([order.idempotency_key for order in request.orders])
            for order in request.orders:
                self._receive(order)
            await asyncio.sleep(self.work_s)
            if len(self.batch_calls) <= self.failing_calls:
                if self.call_error == grpc.StatusCode.DEADLINE_EXCEEDED:
                    await asyncio.sleep(FAR_BEYOND_ANY_DEADLINE_S)
                await context.abort(self.call_error, "broker unreachable")
            return orders_pb2.CreateOrderBatchResponse(
                results=[
                    self._result(i, self._answer(order)) for i, order in enumerate(request.orders)
                ]
            )
        finally:
            self.in_flight -= 1

    async def CreateOrders(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[orders_pb2.CreateOrderRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        """Answers each order after a random delay (so out of order), as the producer writes."""
        results: asyncio.Queue[orders_pb2.CreateOrderResult | None] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()

        async def settle(index: int, request: orders_pb2.CreateOrderRequest) -> None:
            self._receive(request)
            await asyncio.sleep(self.rng.uniform(0, 0.01))
            await results.put(self._result(index, self._answer(request)))

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

    async def GetOrder(
        self, request: orders_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        if request.order_id not in self.orders:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"order {request.order_id} not found")
        return self.orders[request.order_id]

    async def WatchOrder(
        self, request: orders_pb2.WatchOrderRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[orders_pb2.OrderStateChange]:
        order_id = request.order_id
        behaviour = order_id.split("-", 1)[0]
        self.watch_calls[order_id] += 1
        attempt = self.watch_calls[order_id]
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            if behaviour == GONE:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "order_id: must be a UUID")
            if behaviour == NEVER or (behaviour == LATE and attempt <= 2):
                await context.abort(grpc.StatusCode.NOT_FOUND, f"order {order_id} not found")
            if behaviour in (FLAKY, GAP) and attempt == 1:
                yield change(order_id, OrderState.PROCESANDO)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the producer is shutting down")
            if behaviour == GAP:
                for state in (OrderState.ENTREGADO, OrderState.FINALIZADO):
                    yield change(order_id, state)
                return
            # A new watch starts at the current state: the flaky one sees Procesando again.
            for state in ALL_STATES:
                await asyncio.sleep(0.01)
                yield change(order_id, state)
        finally:
            self.open -= 1


def _status(number: int) -> grpc.StatusCode:
    return next(
        (code for code in grpc.StatusCode if code.value[0] == number), grpc.StatusCode.UNKNOWN
    )


class ProducerThread:
    """grpc.aio servers on an event loop of their own thread, on free ports of 127.0.0.1.

    A separate loop because the code under test runs its own (`main()` calls asyncio.run).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[grpc.aio.Server] = []

    def serve(self, servicer: FakeOrderService) -> str:
        server, address = asyncio.run_coroutine_threadsafe(
            start_order_service(servicer), self.loop
        ).result(10)
        self.servers.append(server)
        return address

    def close(self) -> None:
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
