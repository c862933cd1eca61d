"""Connect to the producer and send orders by the RPC chosen: CreateOrder (one order a call),
CreateOrderBatch (`batch_size` orders a call) or CreateOrders (one stream)."""

from __future__ import annotations

from collections.abc import Iterable

from client.batch import send_batches
from client.connection import (
    DEFAULT_RETRIES,
    ChannelSecurity,
    check_create_access,
    connected,
)
from client.outcomes import OnOutcome, SendReport
from client.stream import send_stream
from client.unary import send_orders
from pedidos.v1 import orders_pb2


async def send_to_producer(
    address: str,
    orders: Iterable[orders_pb2.CreateOrderRequest],
    concurrency: int,
    deadline_s: float,
    retries: int = DEFAULT_RETRIES,
    *,
    on_outcome: OnOutcome | None = None,
    security: ChannelSecurity | None = None,
    check_access: bool = False,
    batch_size: int | None = None,
    stream_window: int | None = None,
) -> SendReport:
    """Connect to the producer at `address` and send the orders; ProducerUnreachable if it is down.

    By default each order is one CreateOrder call, `concurrency` in flight. With `batch_size`,
    orders go in CreateOrderBatch calls of that size, `concurrency` calls in flight. With
    `stream_window`, they all go on one CreateOrders stream with at most that many awaiting
    their result, without retries and with no deadline for the whole stream.
    With `check_access`, AccessRefused before anything is sent when the credential is refused.
    """
    async with connected(address, deadline_s, security) as channel:
        if check_access:
            await check_create_access(channel, deadline_s)
        if stream_window is not None:
            streamed = await send_stream(channel, orders, stream_window, on_outcome=on_outcome)
            return streamed.as_send_report()
        if batch_size is not None:
            return await send_batches(
                channel, orders, batch_size, concurrency, deadline_s, retries, on_outcome=on_outcome
            )
        return await send_orders(
            channel, orders, concurrency, deadline_s, retries, on_outcome=on_outcome
        )
