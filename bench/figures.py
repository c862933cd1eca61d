"""A figure: one measured value, the limit measured beside it, its targets and its verdict; and
several runs of a figure merged into one, the median run's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    FAILED = "FAILED"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating between closest ranks like numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of_seconds(cls, latencies_s: Sequence[float]) -> LatencySummary | None:
        if not latencies_s:
            return None
        p50, p99 = (percentile(latencies_s, q) * 1000 for q in (50, 99))
        return cls(len(latencies_s), p50, p99, max(latencies_s) * 1000)

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class Requirement:
    """`measured` must be at least (or at most) `bound`; None on either side means unknown."""

    label: str
    measured: float | None
    bound: float | None
    at_least: bool = True

    @property
    def met(self) -> bool | None:
        if self.measured is None or self.bound is None:
            return None
        return self.measured >= self.bound if self.at_least else self.measured <= self.bound

    def describe(self) -> str:
        sign = "≥" if self.at_least else "≤"
        if self.bound is None:
            bound = "?"
        else:  # small bounds (0.08 ms) need more than one decimal
            bound = f"{self.bound:,.1f}" if abs(self.bound) >= 10 else short(self.bound)
        return f"{self.label} {sign} {bound}"

    def to_json(self) -> dict[str, Any]:
        return dict(target=self.describe(), measured=self.measured, bound=self.bound, met=self.met)


def short(value: float) -> str:
    """A number with the digits that matter: 1,304 · 96.2 · 4.47 · 0.183."""
    size = abs(value)
    digits = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 0.1 else 3
    return f"{value:,.{digits}f}"


def at_least_times(
    label: str, measured: float | None, limit: float | None, factor: float = 1.0
) -> Requirement:
    """measured ≥ factor × limit (e.g. ingest ≥ 0.8 × the no-op RPC rate)."""
    return Requirement(label, measured, None if limit is None else factor * limit)


def at_most_times(
    label: str, measured: float | None, limit: float | None, factor: float = 1.0
) -> Requirement:
    """measured ≤ factor × limit (e.g. ingest p99 ≤ 2 × the no-op p99)."""
    return Requirement(label, measured, None if limit is None else factor * limit, at_least=False)


def ratio(value: float | None, limit: float | None) -> float | None:
    return None if value is None or limit is None or limit <= 0 else value / limit


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Figure:
    key: str
    scenario: str
    label: str
    unit: str
    value: float | None = None
    status: Status = Status.OK
    latency: LatencySummary | None = None
    limit: float | None = None
    limit_label: str | None = None
    requirements: list[Requirement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # CPU other processes used while this was measured; a shared machine skews the figure.
    foreign_cores: float | None = None

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.limit) if self.status is Status.OK else None

    @property
    def met(self) -> bool | None:
        """True/False when every target could be judged; None when there is nothing to judge."""
        verdicts = [r.met for r in self.requirements]
        if self.status is not Status.OK or not verdicts or None in verdicts:
            return None
        return all(verdicts)

    def set_latency(self, seconds: list[float]) -> None:
        """A latency figure: its value is the p50, in ms."""
        self.latency = LatencySummary.of_seconds(seconds)
        self.value = self.latency.p50_ms if self.latency else None

    def refuse(self, problems: list[str]) -> None:
        """A figure whose run was not correct is not reported: FAILED, with the reasons."""
        if not problems:
            return
        if self.value is not None:
            self.details["refused_value"] = self.value
        self.value = None
        self.latency = None
        self.status = Status.FAILED
        self.notes.extend(problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "scenario": self.scenario,
            "label": self.label,
            "unit": self.unit,
            "status": self.status.value,
            "value": rounded(self.value),
            "latency": self.latency.to_json() if self.latency else None,
            "limit": rounded(self.limit),
            "limit_label": self.limit_label,
            "ratio": rounded(self.ratio, 4),
            "targets": [r.to_json() for r in self.requirements],
            "met": self.met,
            "foreign_cores": rounded(self.foreign_cores),
            "notes": self.notes,
            "details": self.details,
        }


# -- several runs ----------------------------------------------------------------------------
# The judged quantity is the ratio when a figure has a limit of the same run (the verdict is
# about it), else the value. The figure reported is the run at the median of that quantity (for
# an even count, the lower middle), whole: its value, limit, targets and notes stay consistent
# with each other. Every run's value, ratio and verdict stay in `details.runs`. A correctness
# failure in any run fails the figure.


def judged_quantity(figure: Figure) -> float | None:
    return figure.ratio if figure.limit is not None else figure.value


def median_index(values: Sequence[float]) -> int:
    """The index of the median of `values` (the lower middle of an even count)."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(range(len(values)), key=values.__getitem__)
    return ordered[(len(values) - 1) // 2]


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
        chosen.details["runs"] = [
            {"value": f.value, "ratio": f.ratio, "met": f.met, "status": f.status.value}
            for f in figures
        ]
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
