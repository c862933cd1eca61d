"""What `python -m producer` and `python -m consumer` share: settings, logs, worker processes."""

from __future__ import annotations

import asyncio
import faulthandler
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from pedidos.runtime.config import Settings, settings_or_exit
from pedidos.runtime.event_loop import event_loop_factory
from pedidos.runtime.logs import configure_logging
from pedidos.runtime.supervisor import is_worker, supervise
from pedidos.runtime.tracing import configure as configure_tracing


def run_service(
    component: str,
    workers: Callable[[Settings], int],
    serve: Callable[[Settings], Coroutine[Any, Any, None]],
) -> None:
    """Run `serve` in this process, or supervise `workers(settings)` copies of it when > 1."""
    settings = settings_or_exit(component)
    configure_logging(component, settings.log_level)
    # `kill -USR1 <pid>`: every thread's stack to the log, the process goes on. faulthandler
    # writes it from the signal handler, so it answers even with the GIL held by a thread stuck
    # in C, where a Python handler would never run.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    count = workers(settings)
    if count > 1 and not is_worker():
        raise SystemExit(supervise(component, count))
    # Each worker traces for itself (the supervisor has nothing to trace).
    configure_tracing(component)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(settings))
