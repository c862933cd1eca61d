"""Where an end-to-end run's steps spent their time, read from the consumer's /metrics at the
end of the run: the mean SMTP attempt (waiting for a connection included), the mean ledger write
(batched: a send slot waits for it), the mean current-state write (batched apart, over a longer
interval) and the mean state record publish."""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

PHASES = "pedidos_step_phase_duration_seconds"
NAMES = {
    "email": "SMTP attempt",
    "ledger": "ledger write",
    "current_state": "current-state write",
    "publish": "state record publish",
}


@dataclass(frozen=True, slots=True)
class StepPhases:
    mean_ms: dict[str, float]  # by phase: email, ledger, current_state, publish
    slots: int  # CONSUMER_MAX_UNRECORDED_EMAILS, per worker
    workers: int

    def describe(self) -> str:
        parts = ", ".join(
            f"{NAMES.get(phase, phase)} {ms:.1f} ms" for phase, ms in self.mean_ms.items()
        )
        per = f" per worker × {self.workers}" if self.workers > 1 else ""
        return (
            f"consumer's step phases, mean: {parts}; a send slot is held from the SMTP attempt "
            f"to its ledger write ({self.slots} slots{per})"
        )

    def to_json(self) -> dict[str, object]:
        rounded = {phase: round(ms, 2) for phase, ms in self.mean_ms.items()}
        return {"mean_ms": rounded, "slots": self.slots, "workers": self.workers}


def step_phases(expositions: Iterable[str], slots: int, workers: int) -> StepPhases | None:
    """From each worker's /metrics text: every phase's mean over all the workers' attempts."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    for text in expositions:
        for family in text_string_to_metric_families(text):
            if family.name != PHASES:
                continue
            for sample in family.samples:
                phase = sample.labels.get("phase", "")
                if sample.name.endswith("_sum"):
                    sums[phase] += sample.value
                elif sample.name.endswith("_count"):
                    counts[phase] += sample.value
    means = {phase: sums[phase] / counts[phase] * 1000 for phase in NAMES if counts[phase]}
    return StepPhases(means, slots, workers) if means else None


def scrape(port: int, workers: int, timeout_s: float = 5.0) -> list[str]:
    """Each worker's /metrics (worker N serves on port + N)."""
    texts = []
    for index in range(workers):
        url = f"http://127.0.0.1:{port + index}/metrics"
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            texts.append(answer.read().decode())
    return texts
