"""Stopping the gRPC server: in-flight calls finish, and no caller waits on a call that no
handler runs."""

from __future__ import annotations

import asyncio

import grpc

# Once no handler runs, how long their answers get to leave before what is left is cancelled.
ANSWERS_LEAVE_S = 1.0


class CallsInProgress:
    """Calls whose handler is running; the metrics interceptor's wrappers count them."""

    __slots__ = ("_idle", "count")

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()  # bound to a loop only once awaited
        self._idle.set()

    def began(self) -> None:
        if not self.count:
            self._idle.clear()
        self.count += 1

    def ended(self) -> None:
        self.count -= 1
        if not self.count:
            self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()


async def stop_server(server: grpc.aio.Server, calls: CallsInProgress, grace_s: float) -> None:
    """`server.stop(grace_s)`, cut short once none of `calls` runs and their answers have had
    ANSWERS_LEAVE_S to go out: then the calls left are cancelled.

    gRPC Python can take a call in at the very moment the server stops and never hand it to a
    handler (about 1 stop in 100 with 8 clients calling, against grpcio 1.85). The stop then
    held for its whole grace, and that caller waited to the end of it: with a 10 s deadline
    against the 10 s grace, it got DEADLINE_EXCEEDED instead of a CANCELLED it can retry at
    once (a fresh-clone CI run saw it). Cut short, such a call is cancelled within a second.

    The stop itself begins at once, in this task: new calls are refused from here on."""
    cut_short = asyncio.ensure_future(_stop_once_idle(server, calls))
    try:
        await server.stop(grace_s)
    finally:
        cut_short.cancel()
        await asyncio.gather(cut_short, return_exceptions=True)


async def _stop_once_idle(server: grpc.aio.Server, calls: CallsInProgress) -> None:
    # Idle again after the pause if a handler began meanwhile (a call taken in as the stop
    # began): a call of ours is never cut short before the grace ends.
    while True:
        await calls.idle()
        await asyncio.sleep(ANSWERS_LEAVE_S)
        if not calls.count:
            break
    await server.stop(0)  # a shorter grace ends the stop sooner: the calls left are cancelled
