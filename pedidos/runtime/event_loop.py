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
