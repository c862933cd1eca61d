"""An in-process OrderService for the client's tests, serving a fake servicer."""

from __future__ import annotations

from typing import Any

import grpc

from pedidos.v1 import orders_pb2_grpc


async def start_order_service(
    servicer: Any, interceptors: list[grpc.aio.ServerInterceptor] | None = None
) -> tuple[grpc.aio.Server, str]:
    """An in-process OrderService (a test fake) on a port the OS picks; the caller stops it."""
    server = grpc.aio.server(interceptors=interceptors)
    orders_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"
