"""What `python -m producer` and `python -m consumer` share: settings, logs, worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from pedidos.runtime.config import Settings, settings_or_exit
from pedidos.runtime.logs import configure_logging
from pedidos.runtime.supervisor import is_worker, supervise
from pedidos.runtime.tracing import configure as configure_tracing


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (not on Windows), else asyncio's own (None).

    Every step of an order is a few tasks, futures and wake-ups from other threads (librdkafka's
    reports, the SMTP senders): uvloop runs them in C. Measured in `make bench` (README,
    "Benchmark"): the consumer's CPU per order and an order's latency alone both drop."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_service(
    component: str,
    workers: Callable[[Settings], int],
    serve: Callable[[Settings], Coroutine[Any, Any, None]],
) -> None:
    """Run `serve` in this process, or supervise `workers(settings)` copies of it when > 1."""
    settings = settings_or_exit(component)
    configure_logging(component, settings.log_level)
    count = workers(settings)
    if count > 1 and not is_worker():
        raise SystemExit(supervise(component, count))
    # Each worker traces for itself (the supervisor has nothing to trace).
    configure_tracing(component)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(settings))
