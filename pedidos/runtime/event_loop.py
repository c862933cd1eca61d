"""Which asyncio event loop the processes run on: uvloop's where it is installed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (not on Windows), else None: asyncio's own.

    Every step of an order is a few tasks, futures and wake-ups from other threads (librdkafka's
    reports, the SMTP senders), and uvloop runs that machinery in C: the consumer's CPU per
    order dropped ~8 % in the benchmark (README, "Benchmark")."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class BoundLoop:
    """The running loop, asked of asyncio once per loop rather than on every call.

    On Python 3.11 every `asyncio.get_running_loop()` makes a getpid() system call (its check
    for a fork): py-spy --native found getpid in 7.5 % of a consumer's samples holding the GIL,
    a third of them from `MicroBatcher.submit`. An object that lives on one loop asks once and
    asks again only when that loop was closed (a test's next `asyncio.run`)."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop
