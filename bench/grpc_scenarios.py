"""Scenarios 1-2: the no-op RPC limit, and CreateOrder ingest beside it."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.checks import rpc_problems
from bench.figures import Figure, at_least_times, at_most_times
from bench.load import Kind, LoadSpec
from bench.resources import CpuUsage, cpu_ms_per_item, saturation
from bench.stats import LatencySummary
from bench.workers import LoadWorkers, fan_out

TARGETED_CONCURRENCY = 16  # from here on ingest must keep up with the no-op RPC
# Let the parent's CPU snapshot land before the window opens.
START_DELAY_S = 0.5


@dataclass(frozen=True, slots=True)
class Timing:
    warmup_s: float
    duration_s: float


@dataclass
class Level:
    kind: Kind
    concurrency: int
    client_processes: int
    completed: int
    rate: float
    latency: LatencySummary | None
    errors: Counter[str]
    cpu: CpuUsage

    def notes(self) -> list[str]:
        per_call = cpu_ms_per_item(self.cpu, "producer", self.rate)
        return [
            self.cpu.describe(),
            saturation(self.cpu, "client", "producer", self.client_processes),
            f"{self.client_processes} client process(es)"
            + ("" if per_call is None else f"; producer CPU {per_call:.2f} ms per call"),
        ]


def measure_level(
    workers: LoadWorkers,
    kind: Kind,
    address: str,
    concurrency: int,
    timing: Timing,
    watched: dict[str, list[int]],
    key_prefix: str,
) -> Level:
    template = LoadSpec(
        kind=kind,
        address=address,
        concurrency=concurrency,
        start_at=time.time() + START_DELAY_S,
        warmup_s=timing.warmup_s,
        duration_s=timing.duration_s,
        key_prefix=key_prefix,
    )
    specs = fan_out(template, workers.size, seed=0)
    results, cpu = workers.measure(
        specs, watched, timing.warmup_s + timing.duration_s + 30, window_s=timing.duration_s
    )
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    for result in results:
        errors.update(result.errors)
        latencies.extend(result.latencies_s)
    completed = sum(r.completed for r in results)
    return Level(
        kind=kind,
        concurrency=concurrency,
        client_processes=len(specs),
        completed=completed,
        rate=completed / timing.duration_s,
        latency=LatencySummary.of_seconds(latencies),
        errors=errors,
        cpu=cpu,
    )


def _level_details(level: Level) -> dict[str, Any]:
    return {
        "concurrency": level.concurrency,
        "client_processes": level.client_processes,
        "completed": level.completed,
        "errors": dict(level.errors),
        "cpu": level.cpu.to_json(),
    }


def noop_figure(level: Level) -> Figure:
    figure = Figure(
        key=f"grpc_limit.c{level.concurrency}",
        scenario="1 gRPC limit",
        label=f"Health.Check c={level.concurrency}",
        unit="RPC/s",
        value=level.rate,
        latency=level.latency,
        notes=level.notes(),
        details=_level_details(level),
        foreign_cores=level.cpu.other,
    )
    figure.refuse(rpc_problems(level.completed, level.errors))
    return figure


def ingest_figure(level: Level, noop: Figure) -> Figure:
    c = level.concurrency
    noop_p99 = noop.latency.p99_ms if noop.latency else None
    figure = Figure(
        key=f"ingest.c{c}",
        scenario="2 Ingest",
        label=f"CreateOrder c={c}",
        unit="orders/s",
        value=level.rate,
        latency=level.latency,
        limit=noop.value,
        limit_label=f"no-op RPC/s c={c}",
        notes=level.notes(),
        details=_level_details(level),
        foreign_cores=level.cpu.other,
    )
    if c >= TARGETED_CONCURRENCY:
        p99 = level.latency.p99_ms if level.latency else None
        figure.requirements = [
            at_least_times("orders/s", level.rate, noop.value, 0.8),
            at_most_times("p99 ms", p99, noop_p99, 2.0),
        ]
    figure.refuse(rpc_problems(level.completed, level.errors))
    return figure
