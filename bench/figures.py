"""A figure: one measured value, the limit measured beside it, its targets and its verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bench.stats import LatencySummary


class Status(StrEnum):
    OK = "ok"
    FAILED = "FAILED"
    NOT_IMPLEMENTED = "not implemented"


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
    label: str, measured: float | None, limit: float | None, factor: float
) -> Requirement:
    """measured ≥ factor × limit (e.g. ingest ≥ 0.8 × the no-op RPC rate)."""
    return Requirement(label, measured, None if limit is None else factor * limit, at_least=True)


def at_most_times(
    label: str, measured: float | None, limit: float | None, factor: float
) -> Requirement:
    """measured ≤ factor × limit (e.g. ingest p99 ≤ 2 × the no-op p99)."""
    return Requirement(label, measured, None if limit is None else factor * limit, at_least=False)


def ratio(value: float | None, limit: float | None) -> float | None:
    return None if value is None or limit is None or limit <= 0 else value / limit


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
            "value": None if self.value is None else round(self.value, 3),
            "latency": self.latency.to_json() if self.latency else None,
            "limit": None if self.limit is None else round(self.limit, 3),
            "limit_label": self.limit_label,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "targets": [r.to_json() for r in self.requirements],
            "met": self.met,
            "foreign_cores": None if self.foreign_cores is None else round(self.foreign_cores, 3),
            "notes": self.notes,
            "details": self.details,
        }
