"""What the services complained about: warnings, errors and non-JSON lines in their logs."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any


@dataclass
class LogFindings:
    path: str
    lines: int = 0
    by_level: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)  # WARNING+ and unstructured lines

    @property
    def suspicious(self) -> int:
        return sum(self.messages.values())

    def to_json(self, shown: int = 10) -> dict[str, Any]:
        return {
            "path": self.path,
            "lines": self.lines,
            "by_level": dict(self.by_level),
            "top_messages": [
                {"message": m, "count": c} for m, c in self.messages.most_common(shown)
            ],
        }


def scan_log_text(text: str, path: str = "") -> LogFindings:
    findings = LogFindings(path)
    for line in text.splitlines():
        if not line.strip():
            continue
        findings.lines += 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            findings.by_level["UNSTRUCTURED"] += 1
            findings.messages[line.strip()[:160]] += 1
            continue
        level = str(record.get("level", "?"))
        findings.by_level[level] += 1
        if level in ("WARNING", "ERROR", "CRITICAL"):
            findings.messages[f"{level} {str(record.get('message', ''))[:150]}"] += 1
    return findings


def scan_log(path: Path) -> LogFindings:
    text = path.read_text(errors="replace") if path.exists() else ""
    return scan_log_text(text, str(path))


_ALARMING = re.compile(r"\b(error|warn(ing)?|panic|traceback|exception|fatal)\b", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def scan_plain_log(path: Path) -> LogFindings:
    """A non-JSON log (Kafka, Elasticsearch, mail sink): lines that mention trouble."""
    findings = LogFindings(str(path))
    text = path.read_text(errors="replace") if path.exists() else ""
    for raw in text.splitlines():
        line = _ANSI.sub("", raw).strip()
        if not line:
            continue
        findings.lines += 1
        match = _ALARMING.search(line)
        if match:
            findings.by_level[match.group(1).upper()] += 1
            findings.messages[line[:160]] += 1
    return findings


class LogTail:
    """Counts lines of a growing log that contain all the needles of each pattern, reading
    each byte once."""

    def __init__(self, path: Path, patterns: Mapping[str, Sequence[str]]) -> None:
        self._path = path
        self._patterns = {name: [n.encode() for n in needles] for name, needles in patterns.items()}
        self._offset = 0
        self._partial = b""
        self.counts = dict.fromkeys(patterns, 0)

    def new_lines(self) -> list[bytes]:
        """The complete lines written since the last call."""
        if not self._path.exists():
            return []
        with open(self._path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next poll
        return lines

    def poll(self) -> dict[str, int]:
        lines = self.new_lines()
        for name, needles in self._patterns.items():
            self.counts[name] += sum(1 for line in lines if all(n in line for n in needles))
        return self.counts


TRANSITION_NEEDLE = '"order state reached"'
FINALIZADO_NEEDLE = '"state":"Finalizado"'
EMAIL_SENT_NEEDLE = '"email":"sent"'
_TRANSITION_TS = re.compile(rb'^\{"ts":"([0-9-]+ [0-9:]+),([0-9]+)".*"order state reached"')


def _stamp(match: re.Match[bytes]) -> float:
    """time.time() of a log line's local-time stamp (millisecond resolution)."""
    moment = datetime.strptime(match.group(1).decode(), "%Y-%m-%d %H:%M:%S")
    return moment.timestamp() + int(match.group(2)) / 1000


def transition(line: bytes) -> tuple[str, str, float] | None:
    """Order id, state and time.time() of a consumer's "order state reached" line (logged once
    the step's e-mail, documents and state record are done), else None."""
    match = _TRANSITION_TS.match(line)
    if match is None:
        return None
    record = json.loads(line)
    return str(record.get("order_id")), str(record.get("state")), _stamp(match)


class TransitionTail(LogTail):
    """The state transitions a growing consumer log gains, each read once."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, {})

    def transitions(self) -> list[tuple[str, str, float]]:
        found = (transition(line) for line in self.new_lines())
        return [each for each in found if each is not None]


@dataclass(frozen=True, slots=True)
class Pace:
    """How steadily the consumer moved orders: gaps between its state transitions."""

    transitions: int
    longest_gap_s: float
    idle_seconds: int  # whole seconds, between the first and last transition, without any
    last_finalizado_at: float | None  # time.time() of the last order logged Finalizado

    def describe(self) -> str:
        return (
            f"consumer pace: {self.transitions:,} transitions, longest pause "
            f"{self.longest_gap_s:.1f}s, {self.idle_seconds} idle seconds"
        )


def consumer_pace(path: Path) -> Pace | None:
    """From the consumer's log (local-time stamps, ms): its state transitions over time."""
    stamps: list[float] = []
    last_final: float | None = None
    if not path.exists():
        return None
    with open(path, "rb") as handle:
        for line in handle:
            match = _TRANSITION_TS.match(line)
            if match:
                stamp = _stamp(match)
                stamps.append(stamp)
                if FINALIZADO_NEEDLE.encode() in line:
                    last_final = stamp if last_final is None else max(last_final, stamp)
    if len(stamps) < 2:
        return None
    stamps.sort()
    gaps = [b - a for a, b in pairwise(stamps)]
    busy = {int(s) for s in stamps}
    idle = sum(1 for second in range(int(stamps[0]), int(stamps[-1]) + 1) if second not in busy)
    return Pace(len(stamps), max(gaps), idle, last_final)
