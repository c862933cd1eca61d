"""How long a service may take to stop once asked to."""

from __future__ import annotations

import asyncio
import faulthandler
import signal

# Beyond what a stop takes when a dependency is down: the consumer's 15 s for steps in progress,
# its final commit and close (10 s at most, a silent broker included) and the state producer's
# flush (10 s); the producer's 10 s for calls in flight plus its flush. Compose's
# stop_grace_period (producer 30 s, consumer 50 s) kills sooner there.
SHUTDOWN_LIMIT_S = 60.0


def stop_on_signals(stop: asyncio.Event, limit_s: float = SHUTDOWN_LIMIT_S) -> None:
    """SIGTERM and SIGINT set `stop`; from the first one on, the process has `limit_s` to end.

    Past it, every thread's stack goes to stderr and the process exits with code 1.
    faulthandler's C thread does it: a stop can hang where no Python code runs again, as
    librdkafka's close() did while holding the GIL (tests/integration/
    test_record_source_rebalance.py), and then nothing in Python, no thread or timer, can."""
    loop = asyncio.get_running_loop()
    armed = False

    def stopping() -> None:
        nonlocal armed
        if not armed:
            armed = True
            faulthandler.dump_traceback_later(limit_s, exit=True)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping)
