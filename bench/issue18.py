"""Issue #18's figures, each judged against its target, derived from one run's figures: CPU per
unit of work of the producer and the consumer, the end-to-end rate and its bottleneck, and the
latency of one CreateOrder beside the broker's ack. ("One order alone" is measured by
bench.latency.) Each figure's limit is its bound's reference, so its ratio is the verdict's."""

from __future__ import annotations

from collections.abc import Mapping
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
    unit: str,
    value: float | None,
    limit: tuple[float | None, str],
    requirement: Requirement,
    sources: list[Figure | None],
) -> Figure:
    """A figure of the issue: value, the bound's reference (`limit`: value, label), its target;
    when a source is missing or FAILED the verdict stays open and a note says why."""
    figure = Figure(key, SCENARIO, label, unit, value, limit=limit[0], limit_label=limit[1])
    figure.requirements = [requirement]
    known = [s for s in sources if s is not None]
    if len(known) < len(sources) or value is None:
        figure.notes.append("not judged: a figure it is derived from is missing or FAILED")
    figure.foreign_cores = max((s.foreign_cores or 0.0 for s in known), default=None)
    figure.details = {"from": [s.key for s in known]}
    return figure


def _producer_cpu(figures: Mapping[str, Figure]) -> Figure:
    ingest, noop = _ok(figures, "ingest.c16"), _ok(figures, "grpc_limit.c16")
    value, limit = producer_ms_per_call(ingest), producer_ms_per_call(noop)
    return judged(
        "issue18.producer_cpu",
        "producer CPU per CreateOrder c=16, beside a no-op call",
        "ms",
        value,
        (limit, "no-op Health.Check c=16, ms"),
        at_most_times(f"ms ({PRODUCER_CPU_FACTOR:g} × no-op)", value, limit, PRODUCER_CPU_FACTOR),
        [ingest, noop],
    )


def _bulk_cpu(figures: Mapping[str, Figure]) -> Figure:
    bulk = _ok(figures, "bulk")
    value = producer_ms_per_call(bulk)
    return judged(
        "issue18.bulk_cpu",
        "producer CPU per order, CreateOrderBatch x1000",
        "ms",
        value,
        (BULK_CPU_MS, TARGET),
        Requirement("ms", value, BULK_CPU_MS, at_least=False),
        [bulk],
    )


def consumer_ms(figure: Figure | None) -> float | None:
    return None if figure is None else figure.details.get("consumer_cpu_ms_per_order")


def _consumer_cpu(figures: Mapping[str, Figure]) -> list[Figure]:
    found = []
    for key in sorted(k for k in figures if k.startswith("e2e.")):
        e2e = _ok(figures, key)
        value = consumer_ms(e2e)
        label = f"consumer CPU per order (5 states), {figures[key].label}"
        found.append(
            judged(
                f"issue18.consumer_cpu.{key.removeprefix('e2e.')}",
                label,
                "ms",
                value,
                (CONSUMER_CPU_MS, TARGET),
                Requirement("ms", value, CONSUMER_CPU_MS, at_least=False),
                [e2e],
            )
        )
    two, one = _ok(figures, "e2e.discard.workers2"), _ok(figures, "e2e.discard")
    if "e2e.discard.workers2" in figures:
        value, limit = consumer_ms(two), consumer_ms(one)
        found.append(
            judged(
                "issue18.consumer_cpu.workers2_vs_1",
                "consumer CPU per order, CONSUMER_WORKERS=2 (all processes) vs 1 worker",
                "ms",
                value,
                (limit, "1 worker, ms"),
                at_most_times(f"ms ({WORKERS_FACTOR:g} × 1 worker)", value, limit, WORKERS_FACTOR),
                [two, one],
            )
        )
    return found


def _e2e(figures: Mapping[str, Figure]) -> Figure | None:
    if "e2e.discard" not in figures:
        return None
    e2e = _ok(figures, "e2e.discard")
    value = None if e2e is None else e2e.value
    figure = judged(
        "issue18.e2e",
        "end to end, discard sink",
        "orders/s",
        value,
        (E2E_ORDERS_S, TARGET),
        at_least_times("orders/s", value, E2E_ORDERS_S, 1.0),
        [e2e],
    )
    found: dict[str, Any] = {} if e2e is None else e2e.details.get("bottleneck") or {}
    if found:
        figure.notes.append(f"bottleneck: {found['verdict']}")
        figure.details["bottleneck"] = found
    return figure


def _create_c1(figures: Mapping[str, Figure]) -> Figure:
    ingest, noop = _ok(figures, "ingest.c1"), _ok(figures, "grpc_limit.c1")
    ack = _ok(figures, "latency.broker_ack")
    value, parts = _p50(ingest), (_p50(noop), _p50(ack))
    bound = None if None in parts else sum(p or 0.0 for p in parts) + C1_SLACK_MS
    figure = judged(
        "issue18.create_c1",
        "CreateOrder c=1 p50",
        "ms",
        value,
        (bound, f"no-op p50 + broker ack p50 + {C1_SLACK_MS:g} ms"),
        at_most_times("p50 ms", value, bound, 1.0),
        [ingest, noop, ack],
    )
    if None not in parts:
        figure.notes.append(f"no-op p50 {parts[0]:.2f} ms, broker ack p50 {parts[1]:.2f} ms")
    return figure


def issue_figures(figures: Mapping[str, Figure]) -> list[Figure]:
    """The issue's figures from one run's figures, by key."""
    derived = [_producer_cpu(figures), _bulk_cpu(figures), *_consumer_cpu(figures)]
    e2e = _e2e(figures)
    return [*derived, *([e2e] if e2e else []), _create_c1(figures)]
