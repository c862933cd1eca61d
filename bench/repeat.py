"""Several runs of every scenario, one figure each: the median run's.

The judged quantity is the ratio when a figure has a limit of the same run (the verdict is about
it), else the value. The figure reported is the run at the median of that quantity (for an
even count, the lower middle), whole: its value, limit, targets and notes stay consistent with
each other. Every run's value, ratio and verdict stay in `details.runs`. A correctness failure
in any run fails the figure."""

from __future__ import annotations

from collections.abc import Sequence

from bench.figures import Figure, Status


def judged_quantity(figure: Figure) -> float | None:
    return figure.ratio if figure.limit is not None else figure.value


def median_index(values: Sequence[float]) -> int:
    """The index of the median of `values` (the lower middle of an even count)."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(range(len(values)), key=values.__getitem__)
    return ordered[(len(values) - 1) // 2]


def _summary(figure: Figure) -> dict[str, object]:
    return {
        "value": figure.value,
        "ratio": figure.ratio,
        "met": figure.met,
        "status": figure.status.value,
    }


def merge(figures: Sequence[Figure]) -> Figure:
    """One figure's runs (one Figure per run) as one figure."""
    failed = [f for f in figures if f.status is Status.FAILED]
    judged = [f for f in figures if f.status is Status.OK and judged_quantity(f) is not None]
    if failed:
        chosen = failed[0]
    elif judged:
        chosen = judged[median_index([judged_quantity(f) or 0.0 for f in judged])]
    else:
        chosen = figures[-1]
    if len(figures) > 1:
        values = [f.value for f in judged if f.value is not None]
        chosen.details["runs"] = [_summary(f) for f in figures]
        chosen.details["median_of"] = len(figures)
        if values:
            chosen.details["value_range"] = [min(values), max(values)]
        if failed:
            chosen.notes.append(f"FAILED in {len(failed)} of {len(figures)} runs")
    return chosen


def merge_runs(runs: Sequence[Sequence[Figure]]) -> list[Figure]:
    """Every figure of every run, merged by key, in the order they first appeared."""
    by_key: dict[str, list[Figure]] = {}
    for run in runs:
        for figure in run:
            by_key.setdefault(figure.key, []).append(figure)
    return [merge(figures) for figures in by_key.values()]
