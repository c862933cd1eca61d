"""How fast this machine is at what the services do most: Python code, and waking another
process or thread. Recorded with every run, so figures from different machines can be told
apart from changes in the code.

The services hand work between threads (the SMTP senders, librdkafka's delivery reports, the
Kafka consumer thread) and between processes (every server of the stack). On some virtual
machines waking a thread on another CPU costs tens of microseconds of CPU, and a hand-over
between two Python threads, which also passes the GIL, more than a hundred: there the same
code spends two to three times the CPU per order that it spends elsewhere."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from timeit import repeat

ROUND_TRIPS = 5_000
# The child end of the process ping-pong: echoes each byte back.
_ECHO = "import os\nwhile (b := os.read(0, 1)):\n    os.write(1, b)\n"


@dataclass(frozen=True, slots=True)
class MachineSpeed:
    python_loop_us: float  # sum(i * i for i in range(10_000)), best of 5
    process_round_trip_us: float  # a byte to another process and back, through pipes
    process_round_trip_cpu_us: float  # this end's CPU per round trip
    thread_round_trip_us: float  # an item to another Python thread and back
    thread_round_trip_cpu_us: float  # the process's CPU per round trip (both threads)

    def describe(self) -> str:
        return (
            f"Python loop {self.python_loop_us:.0f} µs; wake-up round trip to another process "
            f"{self.process_round_trip_us:.1f} µs ({self.process_round_trip_cpu_us:.1f} µs CPU "
            f"here), to another Python thread {self.thread_round_trip_us:.1f} µs "
            f"({self.thread_round_trip_cpu_us:.1f} µs CPU)"
        )

    def to_json(self) -> dict[str, float]:
        return {key: round(value, 1) for key, value in asdict(self).items()}


def _python_loop_us() -> float:
    runs = repeat("sum(i * i for i in range(10_000))", number=50, repeat=5)
    return min(runs) / 50 * 1e6


def _per_trip(trips: int, trip: Callable[[], None]) -> tuple[float, float]:
    """Wall time and this process's CPU (all its threads) per call of `trip`, in µs."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(trips):
        trip()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall / trips * 1e6, cpu / trips * 1e6


def _process_round_trip(trips: int) -> tuple[float, float]:
    with subprocess.Popen(
        [sys.executable, "-c", _ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
    ) as child:
        stdin, stdout = child.stdin, child.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(b"x")
        if stdout.read(1) != b"x":  # the child is up, and echoes
            raise RuntimeError("the echo process did not answer")

        def trip() -> None:
            stdin.write(b"x")
            stdout.read(1)

        timed = _per_trip(trips, trip)
        stdin.close()
    return timed


def _thread_round_trip(trips: int) -> tuple[float, float]:
    there: queue.SimpleQueue[int] = queue.SimpleQueue()
    back: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        while (item := there.get()) >= 0:
            back.put(item)

    peer = threading.Thread(target=echo, daemon=True)
    peer.start()
    there.put(0)
    back.get()

    def trip() -> None:
        there.put(0)
        back.get()

    # Both threads' CPU, as a service's CPU counts all of its threads.
    timed = _per_trip(trips, trip)
    there.put(-1)
    peer.join()
    return timed


def machine_speed(trips: int = ROUND_TRIPS) -> MachineSpeed:
    process = _process_round_trip(trips)
    thread = _thread_round_trip(trips)
    return MachineSpeed(_python_loop_us(), *process, *thread)
