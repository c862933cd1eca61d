"""The chaos suite's report: one row per scenario, printed at the end of the run."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class ChaosRow:
    scenario: str
    orders: int
    lost: int
    duplicate_emails: int
    duplicate_docs: int
    recovery_s: float
    faults: int


ROWS: list[ChaosRow] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    terminalreporter.section("chaos")
    header = (
        f"{'scenario':44} {'orders':>7} {'lost':>5} {'dup e-mails':>12} {'dup docs':>9} "
        f"{'faults':>7} {'recover s':>10}"
    )
    terminalreporter.write_line(header)
    for row in ROWS:
        terminalreporter.write_line(
            f"{row.scenario:44} {row.orders:7d} {row.lost:5d} {row.duplicate_emails:12d} "
            f"{row.duplicate_docs:9d} {row.faults:7d} {row.recovery_s:10.1f}"
        )
