"""The producer's auth interceptor in front of a fake OrderService, called through the client's
own channel: each of the five RPCs (all four kinds of gRPC call) carries the key and is let
through with its permission, refused without it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest

from client.connection import AccessRefused, check_create_access
from pedidos.runtime.api_keys import KeyVerifier, create_key, parse_keys
from pedidos.runtime.grpc_tls import open_channel
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from producer.auth import Authenticator, AuthInterceptor
from tests.order_service import start_order_service
from tests.unit.fake_order_service import FakeOrderService

CREATE = ("CreateOrder", "CreateOrders", "CreateOrderBatch")
READ = ("GetOrder", "WatchOrder")


async def call(stub: orders_pb2_grpc.OrderServiceAsyncStub, rpc: str) -> grpc.StatusCode:
    order = orders_pb2.CreateOrderRequest(idempotency_key="k")
    try:
        if rpc == "CreateOrder":
            await stub.CreateOrder(order, timeout=5)
        elif rpc == "CreateOrders":
            stream = stub.CreateOrders(timeout=5)
            # No order written: the check runs before the handler reads one, and a write that
            # races the refusal can turn the call's status into INTERNAL on the client
            # (grpc.aio, grpc/grpc#36066: 4 calls in 300 here).
            await stream.done_writing()
            async for _ in stream:
                pass
        elif rpc == "CreateOrderBatch":
            await stub.CreateOrderBatch(orders_pb2.CreateOrderBatchRequest(), timeout=5)
        elif rpc == "GetOrder":
            await stub.GetOrder(orders_pb2.GetOrderRequest(order_id="x"), timeout=5)
        else:
            async for _ in stub.WatchOrder(orders_pb2.WatchOrderRequest(order_id="fine-1")):
                pass
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def run(scenario: Callable[[str, dict[str, str]], Awaitable[None]]) -> None:
    keys = {
        "all": create_key("tienda", ["orders:create", "orders:read"]),
        "create": create_key("caja", ["orders:create"]),
    }

    async def main() -> None:
        verifier = KeyVerifier(parse_keys(";".join(line for _, line in keys.values())))
        interceptor = AuthInterceptor(Authenticator(verifier, {}))
        server, address = await start_order_service(FakeOrderService(), [interceptor])
        try:
            await scenario(address, {name: key for name, (key, _) in keys.items()})
        finally:
            await server.stop(None)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_every_kind_of_call_carries_the_key_and_is_checked() -> None:
    async def scenario(address: str, keys: dict[str, str]) -> None:
        outcomes: dict[tuple[str, str], grpc.StatusCode] = {}
        for name, key in (("none", None), ("all", keys["all"]), ("create", keys["create"])):
            async with open_channel(address, api_key=key) as channel:
                stub = orders_pb2_grpc.OrderServiceStub(channel)
                for rpc in (*CREATE, *READ):
                    outcomes[name, rpc] = await call(stub, rpc)
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        assert {rpc: outcomes["none", rpc] for rpc in (*CREATE, *READ)} == dict.fromkeys(
            (*CREATE, *READ), unauthenticated
        )
        # Refusals come from the interceptor; what passes it gets the fake's own answers.
        for rpc in (*CREATE, *READ):
            assert outcomes["all", rpc] not in (unauthenticated, grpc.StatusCode.PERMISSION_DENIED)
        for rpc in CREATE:
            assert outcomes["create", rpc] == outcomes["all", rpc]
        for rpc in READ:
            assert outcomes["create", rpc] == grpc.StatusCode.PERMISSION_DENIED

    run(scenario)


def test_the_client_learns_of_a_refused_key_before_sending_anything() -> None:
    async def scenario(address: str, keys: dict[str, str]) -> None:
        async with open_channel(address, api_key=keys["create"]) as channel:
            await check_create_access(channel, 5)
        unknown = "pdk_" + "a" * 43  # pragma: allowlist secret
        async with open_channel(address, api_key=unknown) as channel:
            with pytest.raises(AccessRefused, match="PRODUCER_API_KEY"):
                await check_create_access(channel, 5)

    run(scenario)
