"""Long-lived client processes (spawned, never forked: gRPC does not survive fork) that run
load specs on request, so each concurrency level starts without import or connect costs."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from bench.load import LoadResult, LoadSpec, run_load
from bench.resources import CpuMeter, CpuUsage


class WorkerError(RuntimeError):
    pass


def _serve(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops its clients itself
    conn.send("ready")
    while True:
        try:
            spec = conn.recv()
        except EOFError:  # the bench went away
            return
        if spec is None:
            return
        conn.send(run_load(spec))


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
    def __init__(self, processes: int, start_timeout_s: float = 60) -> None:
        self.size = processes
        self._start_timeout_s = start_timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[BaseProcess, Connection]] = []
        self._busy: list[Connection] = []

    def __enter__(self) -> LoadWorkers:
        self.start()
        return self

    def start(self) -> None:
        if self._workers:
            return
        try:
            for index in range(self.size):
                parent, child = self._context.Pipe()
                process = self._context.Process(
                    target=_serve, args=(child,), name=f"bench-client-{index}", daemon=True
                )
                process.start()
                child.close()
                self._workers.append((process, parent))
            for started, conn in self._workers:
                try:
                    ready = conn.poll(self._start_timeout_s) and conn.recv() == "ready"
                except EOFError:
                    ready = False
                if not ready:
                    raise WorkerError(f"client process {started.name} did not start")
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p, _ in self._workers if p.pid is not None]

    def submit(self, specs: list[LoadSpec]) -> None:
        if self._busy:
            raise WorkerError("previous load still running")
        self.start()  # again, if a failed collect stopped them
        if len(specs) > len(self._workers):
            raise WorkerError(f"{len(specs)} specs for {len(self._workers)} client processes")
        for spec, (_, conn) in zip(specs, self._workers, strict=False):
            conn.send(spec)
            self._busy.append(conn)

    def collect(self, timeout_s: float) -> list[LoadResult]:
        deadline = time.monotonic() + timeout_s
        results = []
        try:
            for conn in self._busy:
                if not conn.poll(max(deadline - time.monotonic(), 0)):
                    raise WorkerError(f"client load did not finish within {timeout_s:.0f}s")
                try:
                    result = conn.recv()
                except EOFError:
                    raise WorkerError("a client process died") from None
                if result.failure:
                    raise WorkerError(f"client process failed: {result.failure}")
                results.append(result)
        except BaseException:
            # A worker that missed its deadline may still answer later: stop them all.
            self.close()
            raise
        finally:
            self._busy = []
        return results

    def close(self) -> None:
        for _, conn in self._workers:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
        for process, conn in self._workers:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
            conn.close()
        self._workers = []

    def measure(
        self,
        specs: list[LoadSpec],
        watched: dict[str, list[int]],
        timeout_s: float,
        window_s: float | None = None,
    ) -> tuple[list[LoadResult], CpuUsage]:
        """Run `specs` (all starting together); CPU is metered from their start (after warm-up)
        for `window_s`, or until every process has finished."""
        meter = CpuMeter({"client": self.pids[: len(specs)], **watched})
        self.submit(specs)
        begin = specs[0].start_at + specs[0].warmup_s
        time.sleep(max(begin - time.time(), 0))
        meter.start()
        if window_s is not None:
            time.sleep(max(begin + window_s - time.time(), 0))
            cpu = meter.stop()
            return self.collect(timeout_s), cpu
        results = self.collect(timeout_s)
        return results, meter.stop()
