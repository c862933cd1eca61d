"""The chaos suite's report: one row per scenario, printed at the end of the run."""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class ChaosRow:
    """Exact counts for one scenario. Duplicates are measured where they can really happen:

    - `duplicate_emails`: e-mails beyond the 5 of each order in the Maildir;
    - `redone_steps`: an (order, state) step completed (logged "order state reached") more than
      once across the scenario's consumers: a redelivered record whose step was already done,
      caught by the ledger (no e-mail) or not (a duplicate e-mail);
    - `repeated_states`: records beyond one per (order, state) on the states topic;
    - `repeated_orders`: records beyond one per order id on `Pedidos` (a client retry after a
      publish whose acknowledgement was lost).
    Event documents cannot be duplicated (their id is (order, state)); a second `create` of one
    gets 409 and needs a second e-mail before it, so 409s are bounded by `duplicate_emails`.
    """

    scenario: str
    orders: int
    lost: int
    duplicate_emails: int
    redone_steps: int
    repeated_states: int
    repeated_orders: int
    faults: int
    recovery_s: float


ROWS: list[ChaosRow] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    terminalreporter.section("chaos")
    header = (
        f"{'scenario':48} {'orders':>6} {'lost':>4} {'dup e-mails':>11} {'redone steps':>12} "
        f"{'dup states':>10} {'dup orders':>10} {'faults':>6} {'recover s':>9}"
    )
    terminalreporter.write_line(header)
    for row in ROWS:
        terminalreporter.write_line(
            f"{row.scenario:48} {row.orders:6d} {row.lost:4d} {row.duplicate_emails:11d} "
            f"{row.redone_steps:12d} {row.repeated_states:10d} {row.repeated_orders:10d} "
            f"{row.faults:6d} {row.recovery_s:9.1f}"
        )
