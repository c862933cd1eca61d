"""OrderService: CreateOrder, the CreateOrders stream and CreateOrderBatch publish to `Pedidos`
and answer after Kafka's ack; GetOrder and WatchOrder track an order through its states."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from functools import partial

import grpc

from pedidos.runtime.logs import mask_email
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from pedidos.wire.proto_mapping import order_to_proto, state_change_to_proto
from producer.intake import Accepted, OrderIntake, OrderRejected, correlation_id, not_acknowledged
from producer.tracking import OrderTracking, StateFanout, TrackingError, checked_order_id

log = logging.getLogger(__name__)

# Orders of one CreateOrders stream waiting for Kafka's ack; past it the stream is not read, so
# gRPC flow control slows the client down.
BULK_MAX_IN_FLIGHT = 20_000
# Orders per CreateOrderBatch call: a bound on how long one call takes. Size is bounded apart by
# GRPC_MAX_MESSAGE_BYTES (1 MiB: ~5,800 typical orders, but 1,000 with every field at its
# maximum take ~1.2 MB and get RESOURCE_EXHAUSTED).
BATCH_MAX_ORDERS = 1_000


class OrderService(orders_pb2_grpc.OrderServiceServicer):
    def __init__(
        self,
        intake: OrderIntake,
        publish_timeout_s: float,
        tracking: OrderTracking,
        fanout: StateFanout,
    ) -> None:
        self._intake = intake
        self._publish_timeout_s = publish_timeout_s
        self._tracking = tracking
        self._fanout = fanout

    # -- intake --------------------------------------------------------------------------------
    async def CreateOrder(
        self, request: orders_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.CreateOrderResponse:
        correlation = correlation_id(context.invocation_metadata())
        try:
            accepted = self._intake.submit(request, correlation)
        except OrderRejected as exc:
            await context.abort(exc.code, exc.message)
        delivery = accepted.delivery
        if not delivery.done():
            # wait() neither cancels the delivery (retries of the same key share it) nor needs
            # the extra hops of wait_for(shield(...)).
            await asyncio.wait((delivery,), timeout=self._ack_timeout(context))
        error = _delivery_error(delivery)
        if error is not None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, not_acknowledged(accepted.order_id, error)
            )
        log.info(
            "order accepted",
            extra={
                "order_id": accepted.order_id,
                "customer": mask_email(request.order.customer_email),
                "correlation_id": correlation,
            },
        )
        return accepted.answer()

    async def CreateOrders(
        self,
        request_iterator: AsyncIterator[orders_pb2.CreateOrderRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        """Reads orders while earlier ones wait for their ack; each result is written as soon as
        its order is settled, so results come in ack order, matched by `index`."""
        correlation = correlation_id(context.invocation_metadata())
        ready: deque[orders_pb2.CreateOrderResult] = deque()
        wake = asyncio.Event()
        room = asyncio.Event()
        state = _BulkState()

        def settled(index: int, accepted: Accepted, _: asyncio.Future[object]) -> None:
            state.in_flight -= 1
            ready.append(_result(index, accepted))
            wake.set()
            if state.in_flight < BULK_MAX_IN_FLIGHT:
                room.set()

        async def read() -> None:
            index = 0
            intake = self._intake
            async for request in request_iterator:
                try:
                    accepted = intake.submit(request, correlation)
                except OrderRejected as exc:
                    ready.append(_result(index, exc))
                    wake.set()
                else:
                    state.in_flight += 1
                    accepted.delivery.add_done_callback(partial(settled, index, accepted))
                    if state.in_flight >= BULK_MAX_IN_FLIGHT:
                        room.clear()
                        await room.wait()
                index += 1
            state.received = index

        reader = asyncio.create_task(read())
        reader.add_done_callback(lambda _: wake.set())
        written = 0
        try:
            while True:
                await wake.wait()
                wake.clear()
                while ready:
                    await context.write(ready.popleft())
                    written += 1
                if reader.done():
                    reader.result()  # a broken request stream ends the call with its error
                    if state.in_flight == 0 and not ready:
                        break
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        log.info(
            "order stream done",
            extra={"orders": state.received, "results": written, "correlation_id": correlation},
        )

    async def CreateOrderBatch(
        self, request: orders_pb2.CreateOrderBatchRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.CreateOrderBatchResponse:
        if len(request.orders) > BATCH_MAX_ORDERS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"orders: at most {BATCH_MAX_ORDERS} per call, got {len(request.orders)}",
            )
        correlation = correlation_id(context.invocation_metadata())
        submit = self._intake.submit
        outcomes: list[Accepted | OrderRejected] = []
        for order in request.orders:
            try:
                outcomes.append(submit(order, correlation))
            except OrderRejected as exc:
                outcomes.append(exc)
        waiting = {
            outcome.delivery
            for outcome in outcomes
            if isinstance(outcome, Accepted) and not outcome.delivery.done()
        }
        if waiting:
            await asyncio.wait(waiting, timeout=self._ack_timeout(context))
        results = [_result(index, outcome) for index, outcome in enumerate(outcomes)]
        accepted = sum(1 for result in results if result.HasField("accepted"))
        log.info(
            "order batch done",
            extra={
                "orders": len(results),
                "accepted": accepted,
                "refused": len(results) - accepted,
                "correlation_id": correlation,
            },
        )
        return orders_pb2.CreateOrderBatchResponse(results=results)

    def _ack_timeout(self, context: grpc.aio.ServicerContext) -> float:
        """How long to wait for Kafka: the publish timeout, cut short by the call's deadline."""
        remaining = context.time_remaining()
        timeout = (
            self._publish_timeout_s
            if remaining is None
            else min(remaining, self._publish_timeout_s)
        )
        return max(timeout - 0.05, 0.01)

    # -- tracking ------------------------------------------------------------------------------
    async def GetOrder(
        self, request: orders_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.Order:
        try:
            order = await self._tracking.get(request.order_id, context.time_remaining())
        except TrackingError as exc:
            await context.abort(exc.code, exc.message)
        return order_to_proto(order)

    async def WatchOrder(
        self, request: orders_pb2.WatchOrderRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[orders_pb2.OrderStateChange]:
        outcome = "cancelled"
        try:
            order_id = checked_order_id(request.order_id)
            async with contextlib.aclosing(
                self._tracking.watch(order_id, context.time_remaining)
            ) as changes:
                async for state, at in changes:
                    yield state_change_to_proto(order_id, state, at)
            outcome = "finished"
        except TrackingError as exc:
            outcome = exc.code.name
            await context.abort(exc.code, exc.message)
        finally:
            log.info(
                "watch ended",
                extra={
                    "order_id": request.order_id,
                    "outcome": outcome,
                    "watchers": self._fanout.watchers,
                },
            )


class _BulkState:
    __slots__ = ("in_flight", "received")

    def __init__(self) -> None:
        self.in_flight = 0
        self.received = 0


def _delivery_error(delivery: asyncio.Future[object]) -> BaseException | None:
    """Why an order is not acknowledged (a delivery still pending counts as timed out), or None."""
    if not delivery.done() or delivery.cancelled():
        return TimeoutError()
    return delivery.exception()


def _result(index: int, outcome: Accepted | OrderRejected) -> orders_pb2.CreateOrderResult:
    """One order's result in a stream or batch: refused, acknowledged or not acknowledged."""
    if isinstance(outcome, OrderRejected):
        code, message = outcome.code, outcome.message
    else:
        error = _delivery_error(outcome.delivery)
        if error is None:
            return orders_pb2.CreateOrderResult(index=index, accepted=outcome.answer())
        code, message = grpc.StatusCode.UNAVAILABLE, not_acknowledged(outcome.order_id, error)
    return orders_pb2.CreateOrderResult(
        index=index, error=orders_pb2.OrderError(code=code.value[0], message=message)
    )
