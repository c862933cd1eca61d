"""Several copies of a service under one supervisor, so one container can use every core.

Python runs one core per process (the GIL), so `PRODUCER_WORKERS` / `CONSUMER_WORKERS` > 1
start that many child processes of `python -m <service>`:
- producer workers share the gRPC port (SO_REUSEPORT, on by default in gRPC on Linux) and the
  kernel spreads incoming connections between them;
- consumer workers are members of the same Kafka group and share its partitions.
The supervisor forwards SIGTERM/SIGINT, and if one worker dies it stops the others and exits
with that worker's code, so the orchestrator restarts the whole unit rather than running short.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

log = logging.getLogger(__name__)

# Set in each child so that it runs the service itself instead of supervising again.
WORKER_INDEX_ENV = "PEDIDOS_WORKER_INDEX"
# What a worker's stop may take (the consumer's, a silent broker included: LONGEST_STOP_S in
# consumer/app.py, 35 s), under the workers' own 60 s limit, which prints their stacks.
STOP_GRACE_S = 45.0
_PR_SET_PDEATHSIG = 1


def _stop_with_supervisor() -> None:
    # A supervisor killed with SIGKILL cannot forward anything: let the kernel do it (Linux).
    # Unlike devkit/tether.py (the tests' and bench's way), workers stay the supervisor's direct
    # children and get SIGTERM, a graceful stop; the preexec_fn is safe here because the
    # supervisor starts them before any gRPC or Kafka thread exists.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def is_worker() -> bool:
    return WORKER_INDEX_ENV in os.environ


def worker_index() -> int:
    """0 in a single process; the worker's number under a supervisor (ports are offset by it)."""
    return int(os.environ.get(WORKER_INDEX_ENV, "0"))


def supervise(module: str, count: int) -> int:
    """Run `count` workers of `python -m module` until they stop; returns the exit code."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, WORKER_INDEX_ENV: str(index)},
            preexec_fn=_stop_with_supervisor,
        )
        for index in range(count)
    ]
    log.info("workers started", extra={"workers": count, "pids": [c.pid for c in children]})
    stopping = False

    def forward(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        failed: subprocess.Popen[bytes] | None = None
        while not stopping and failed is None:
            failed = next((c for c in children if c.poll() is not None), None)
            time.sleep(0.2)
        if failed is not None and not stopping:
            log.error(
                "a worker exited; stopping the others",
                extra={"pid": failed.pid, "exit_code": failed.returncode},
            )
            forward(signal.SIGTERM, None)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in children:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("a worker did not stop in time; killing it", extra={"pid": child.pid})
                child.kill()
                child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed is not None:
        return failed.returncode or 1
    return max((abs(child.returncode or 0) for child in children), default=0)
