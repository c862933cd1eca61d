"""Long-lived client processes (spawned, never forked: gRPC does not survive fork) that run
load specs on request, so each concurrency level starts without import or connect costs."""

from __future__ import annotations

import multiprocessing
import signal
import time
from dataclasses import replace
from multiprocessing.pool import AsyncResult, Pool
from multiprocessing.synchronize import Semaphore

from bench.load import LoadResult, LoadSpec, run_load
from bench.resources import CpuMeter, CpuUsage
from devkit.credentials import dev_key

START_TIMEOUT_S = 60.0


class WorkerError(RuntimeError):
    pass


def _started(started: Semaphore) -> None:
    """A client process's first step: it has imported bench.load (this module imports it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops its clients itself
    started.release()


def split(total: int, parts: int) -> list[int]:
    """`total` callers over at most `parts` processes, as evenly as possible, no empty share."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def fan_out(
    template: LoadSpec, processes: int, seed: int, fixed_concurrency: bool = False
) -> list[LoadSpec]:
    """One spec per client process: `template`'s concurrency (unless `fixed_concurrency`: each
    process that many) and count shared between them, each with its own seed and key prefix."""
    counts: list[int | None]
    if fixed_concurrency:
        counts = list(split(template.count or 0, processes))
        shares = [template.concurrency] * len(counts)
    else:
        shares = split(template.concurrency, processes)
        total = template.count
        counts = [None] * len(shares) if total is None else list(split(total, len(shares)))
    return [
        replace(
            template,
            concurrency=share,
            count=count,
            seed=seed + index,
            key_prefix=f"{template.key_prefix}-{index}",
        )
        for index, (share, count) in enumerate(zip(shares, counts, strict=False))
    ]


class LoadWorkers:
    """A pool of client processes; each load spec runs in one of them, all at once."""

    def __init__(self, processes: int) -> None:
        self.size = processes
        self._context = multiprocessing.get_context("spawn")
        self._pool: Pool | None = None
        self._busy: list[AsyncResult[LoadResult]] = []

    def __enter__(self) -> LoadWorkers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Pool:
        """The pool, once every client process is up and has imported the load code."""
        if self._pool is not None:
            return self._pool
        started = self._context.Semaphore(0)
        dev_key()  # in the environment the client processes inherit: they present this key
        self._pool = self._context.Pool(self.size, _started, (started,))
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            for _ in range(self.size):
                if not started.acquire(timeout=max(deadline - time.monotonic(), 0)):
                    raise WorkerError(f"client processes did not start in {START_TIMEOUT_S:.0f}s")
        except BaseException:
            self.close()
            raise
        return self._pool

    @property
    def pids(self) -> list[int]:
        # The pool's processes are the bench's only multiprocessing children.
        return [p.pid for p in multiprocessing.active_children() if p.pid is not None]

    def submit(self, specs: list[LoadSpec]) -> None:
        if self._busy:
            raise WorkerError("previous load still running")
        if len(specs) > self.size:
            raise WorkerError(f"{len(specs)} specs for {self.size} client processes")
        pool = self.start()  # again, if a failed collect stopped them
        self._busy = [pool.apply_async(run_load, (spec,)) for spec in specs]

    def collect(self, timeout_s: float) -> LoadResult:
        """What every client process did with the load submitted, as one result."""
        deadline = time.monotonic() + timeout_s
        total = LoadResult()
        try:
            for pending in self._busy:
                result = pending.get(max(deadline - time.monotonic(), 0))
                if result.failure:
                    raise WorkerError(f"client process failed: {result.failure}")
                total.absorb(result)
        except multiprocessing.TimeoutError:
            # A worker that missed its deadline may still answer later: stop them all.
            self.close()
            raise WorkerError(f"client load did not finish within {timeout_s:.0f}s") from None
        except BaseException:
            self.close()
            raise
        finally:
            self._busy = []
        return total

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def measure(
        self,
        specs: list[LoadSpec],
        watched: dict[str, list[int]],
        timeout_s: float,
        window_s: float | None = None,
    ) -> tuple[LoadResult, CpuUsage]:
        """Run `specs` (all starting together); CPU is metered from their start (after warm-up)
        for `window_s`, or until every process has finished. An idle client process adds no
        CPU, so all of them are metered (which one runs a spec is the pool's choice)."""
        meter = CpuMeter({"client": self.pids, **watched})
        self.submit(specs)
        begin = specs[0].start_at + specs[0].warmup_s
        time.sleep(max(begin - time.time(), 0))
        meter.start()
        if window_s is None:
            result = self.collect(timeout_s)
            return result, meter.stop()
        time.sleep(max(begin + window_s - time.time(), 0))
        cpu = meter.stop()
        return self.collect(timeout_s), cpu
