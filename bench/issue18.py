"""Issue #18's figures, each judged against its target, derived from one run's figures: CPU per
unit of work of the producer and the consumer, the end-to-end rate and its bottleneck, and the
latency of one CreateOrder beside the broker's ack. ("One order alone" is measured by
bench.latency.) Each figure's limit is its bound's reference, so its ratio is the verdict's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.figures import Figure, Requirement, Status, at_least_times, at_most_times

SCENARIO = "8 Issue #18"
PRODUCER_CPU_FACTOR = 2.0  # per CreateOrder ≤ 2 × per no-op call, c=16
BULK_CPU_MS = 0.08  # per order in CreateOrderBatch of 1,000
CONSUMER_CPU_MS = 2.0  # per order, 5 states
WORKERS_FACTOR = 1.1  # CONSUMER_WORKERS=2 "not worse": ≤ 1.1 × one worker
E2E_ORDERS_S = 200.0  # discard sink
C1_SLACK_MS = 0.5  # CreateOrder c=1 p50 ≤ no-op p50 + broker ack p50 + 0.5 ms
TARGET = "target"
# The share of a machine's CPUs past which a rate is out of its reach: services that hand work
# to each other leave some CPU idle while they wait, as `bottleneck` counts a core at 0.9.
MACHINE_SHARE = 0.9


def _ok(figures: Mapping[str, Figure], key: str) -> Figure | None:
    figure = figures.get(key)
    return figure if figure is not None and figure.status is Status.OK else None


def producer_ms_per_call(figure: Figure | None) -> float | None:
    """The producer's CPU per call (or order) of a gRPC figure: its cores over its rate."""
    if figure is None or not figure.value:
        return None
    cores = (figure.details.get("cpu") or {}).get("cores", {}).get("producer")
    return None if cores is None else cores / figure.value * 1000


def _p50(figure: Figure | None) -> float | None:
    return figure.latency.p50_ms if figure is not None and figure.latency else None


def judged(
    key: str,
    label: str,
    target: Requirement,
    limit: tuple[float | None, str],
    sources: list[Figure | None],
    unit: str = "ms",
) -> Figure:
    """A figure of the issue: its value is what `target` measures; `limit` (value, label) is
    the bound's reference. When a source is missing or FAILED the verdict stays open and a note
    says why."""
    value = target.measured
    figure = Figure(key, SCENARIO, label, unit, value, limit=limit[0], limit_label=limit[1])
    figure.requirements = [target]
    known = [s for s in sources if s is not None]
    if len(known) < len(sources) or value is None:
        figure.notes.append("not judged: a figure it is derived from is missing or FAILED")
    figure.foreign_cores = max((s.foreign_cores or 0.0 for s in known), default=None)
    figure.details = {"from": [s.key for s in known]}
    return figure


def _producer_cpu(figures: Mapping[str, Figure]) -> Figure:
    ingest, noop = _ok(figures, "ingest.c16"), _ok(figures, "grpc_limit.c16")
    value, limit = producer_ms_per_call(ingest), producer_ms_per_call(noop)
    factor = PRODUCER_CPU_FACTOR
    target = at_most_times(f"ms ({factor:g} × no-op)", value, limit, factor)
    label = "producer CPU per CreateOrder c=16, beside a no-op call"
    limits = (limit, "no-op Health.Check c=16, ms")
    return judged("issue18.producer_cpu", label, target, limits, [ingest, noop])


def _bulk_cpu(figures: Mapping[str, Figure]) -> Figure:
    bulk = _ok(figures, "bulk")
    target = at_most_times("ms", producer_ms_per_call(bulk), BULK_CPU_MS)
    label = "producer CPU per order, CreateOrderBatch x1000"
    return judged("issue18.bulk_cpu", label, target, (BULK_CPU_MS, TARGET), [bulk])


def consumer_ms(figure: Figure | None) -> float | None:
    return None if figure is None else figure.details.get("consumer_cpu_ms_per_order")


def _consumer_cpu(figures: Mapping[str, Figure]) -> list[Figure]:
    found = []
    for key in sorted(k for k in figures if k.startswith("e2e.")):
        e2e = _ok(figures, key)
        target = at_most_times("ms", consumer_ms(e2e), CONSUMER_CPU_MS)
        label = f"consumer CPU per order (5 states), {figures[key].label}"
        name = f"issue18.consumer_cpu.{key.removeprefix('e2e.')}"
        figure = judged(name, label, target, (CONSUMER_CPU_MS, TARGET), [e2e])
        figure.notes += _own_code_share(_ok(figures, "own_code"), consumer_ms(e2e))
        found.append(figure)
    if "e2e.discard.workers2" in figures:
        two, one = _ok(figures, "e2e.discard.workers2"), _ok(figures, "e2e.discard")
        limit, factor = consumer_ms(one), WORKERS_FACTOR
        target = at_most_times(f"ms ({factor:g} × 1 worker)", consumer_ms(two), limit, factor)
        label = "consumer CPU per order, CONSUMER_WORKERS=2 (all processes) vs 1 worker"
        key = "issue18.consumer_cpu.workers2_vs_1"
        found.append(judged(key, label, target, (limit, "1 worker, ms"), [two, one]))
    return found


def _own_code_share(own: Figure | None, whole_ms: float | None) -> list[str]:
    """How much of a consumer's CPU per order its own code takes alone (5d), the rest being
    its adapters, their servers' answers and the machine's sharing."""
    if own is None or own.value is None or not whole_ms:
        return []
    return [
        f"its own code alone, in memory (5d): {own.value:.2f} ms ({own.value / whole_ms:.0%}); "
        f"adapters, servers' answers and sharing the rest"
    ]


def _e2e(figures: Mapping[str, Figure]) -> list[Figure]:
    if "e2e.discard" not in figures:
        return []
    e2e = _ok(figures, "e2e.discard")
    target = at_least_times("orders/s", None if e2e is None else e2e.value, E2E_ORDERS_S)
    label, limits = "end to end, discard sink", (E2E_ORDERS_S, TARGET)
    figure = judged("issue18.e2e", label, target, limits, [e2e], unit="orders/s")
    found: dict[str, Any] = {} if e2e is None else e2e.details.get("bottleneck") or {}
    if found:
        figure.notes.append(f"bottleneck: {found['verdict']}")
        figure.details["bottleneck"] = found
    budget = None if e2e is None else cores_at_rate(e2e, E2E_ORDERS_S)
    if budget is not None:
        figure.notes.append(budget.describe())
        figure.details["cores_at_target"] = budget.to_json()
    return [figure]


@dataclass(frozen=True, slots=True)
class CoreBudget:
    """The cores each process of a run would use at another rate, its CPU per order the same:
    whether the machine could run the whole pipeline that fast at all."""

    rate: float
    cores: dict[str, float]  # by process group, busiest first
    logical_cpus: int

    @property
    def total(self) -> float:
        return sum(self.cores.values())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {cores:.2f}" for name, cores in self.cores.items())
        share = self.total / self.logical_cpus
        verdict = (
            "more than this machine can give" if share >= MACHINE_SHARE else "within this machine"
        )
        return (
            f"at {self.rate:g} orders/s, at this run's CPU per order: {self.total:.2f} cores of "
            f"{self.logical_cpus} ({share:.0%}; {parts}): {verdict}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "total": round(self.total, 3),
            "logical_cpus": self.logical_cpus,
            "cores": {name: round(cores, 3) for name, cores in self.cores.items()},
        }


def cores_at_rate(figure: Figure, rate: float) -> CoreBudget | None:
    """The cores of an end-to-end run's processes at `rate` orders/s (the bench's own process
    left out, the kernel's unattributed share kept: it is the pipeline's network and disk)."""
    cpu = figure.details.get("cpu") or {}
    orders = figure.details.get("orders")
    if not orders or not cpu.get("cores") or not cpu.get("logical_cpus") or not cpu.get("wall_s"):
        return None
    used = {name: c for name, c in cpu["cores"].items() if name != "bench" and c > 0}
    used["unattributed"] = cpu.get("unattributed", 0.0)
    # Cores over the metered window are CPU seconds per order times `rate` (as cpu_ms_per_unit:
    # the window's idle ends count, they are the run's cost too).
    scale = cpu["wall_s"] / orders * rate
    scaled = {name: cores * scale for name, cores in used.items() if cores * scale >= 0.005}
    ordered = dict(sorted(scaled.items(), key=lambda item: item[1], reverse=True))
    return CoreBudget(rate, ordered, int(cpu["logical_cpus"]))


def _create_c1(figures: Mapping[str, Figure]) -> Figure:
    ingest, noop = _ok(figures, "ingest.c1"), _ok(figures, "grpc_limit.c1")
    ack = _ok(figures, "latency.broker_ack")
    parts = (_p50(noop), _p50(ack))
    bound = None if None in parts else sum(p or 0.0 for p in parts) + C1_SLACK_MS
    limits = (bound, f"no-op p50 + broker ack p50 + {C1_SLACK_MS:g} ms")
    target = at_most_times("p50 ms", _p50(ingest), bound)
    figure = judged("issue18.create_c1", "CreateOrder c=1 p50", target, limits, [ingest, noop, ack])
    if None not in parts:
        figure.notes.append(f"no-op p50 {parts[0]:.2f} ms, broker ack p50 {parts[1]:.2f} ms")
    return figure


def issue_figures(figures: Mapping[str, Figure]) -> list[Figure]:
    """The issue's figures from one run's figures, by key."""
    derived = [_producer_cpu(figures), _bulk_cpu(figures), *_consumer_cpu(figures)]
    return [*derived, *_e2e(figures), _create_c1(figures)]
