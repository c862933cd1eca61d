"""gRPC's asyncio runtime kept for the life of the process."""

from __future__ import annotations

import asyncio
import functools

import grpc


@functools.cache
def keep_grpc_aio_runtime() -> None:
    """Hold one reference on gRPC's asyncio runtime until the process exits.

    gRPC counts its asyncio channels, servers and calls; when the last is freed it shuts the
    runtime down (stops its poller thread, `grpc_shutdown`) and builds it again for the next
    channel. A process that runs `asyncio.run` more than once (the interactive client, one per
    command; the test session, one per test) would go through that each time, and that path is
    where gRPC's own hang reports are (grpc/grpc#22365, #40989, #43421). Held, the runtime lives
    as long as the process, as it does in the producer. Idempotent; not from a running loop."""

    async def hold() -> None:
        grpc.aio.init_grpc_aio()

    asyncio.run(hold())
