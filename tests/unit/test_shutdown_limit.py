"""A service asked to stop ends within its limit even when the stop hangs where no Python code
runs: in a child process, a stop stuck in C code holding the GIL (a regular expression
backtracking for ever, standing in for librdkafka's close())."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent(
    """
    import asyncio, os, re, signal, sys
    from pedidos.runtime.shutdown import stop_on_signals

    async def main(limit_s: float, hang: bool) -> None:
        stop = asyncio.Event()
        stop_on_signals(stop, limit_s)
        os.kill(os.getpid(), signal.SIGTERM)
        await stop.wait()
        if hang:
            re.match(r"(a+)+$", "a" * 64 + "b")  # in C, with the GIL, for ages

    asyncio.run(main(float(sys.argv[1]), sys.argv[2] == "hang"))
    """
)


def stop_child(limit_s: float, hang: bool) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(limit_s), "hang" if hang else "finish"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done, time.monotonic() - started


def test_a_stop_stuck_holding_the_gil_ends_at_the_limit_with_every_stack() -> None:
    done, took = stop_child(1.0, hang=True)
    assert done.returncode == 1, done
    assert took < 15, took
    assert "Timeout (0:00:01)!" in done.stderr
    assert "in main" in done.stderr  # where it hung, from the stack dump


def test_a_stop_that_finishes_in_time_is_not_cut_short() -> None:
    done, took = stop_child(5.0, hang=False)
    assert done.returncode == 0, done
    assert "Timeout" not in done.stderr
    assert took < 5
