"""The watchdog plugin (devkit/pytest_watchdog.py), run in a child pytest on tests written here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WATCHDOG = ["-p", "devkit.pytest_watchdog", "-o", "watchdog_grace=2"]

STUCK = """
import signal
import time

import pytest


@pytest.mark.timeout(1)
def test_stuck_where_no_signal_reaches():
    # pytest-timeout's SIGALRM never arrives, as when the main thread is stuck in C.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(60)
"""

IN_TIME = """
import time

import pytest


@pytest.mark.timeout(1)
def test_quick():
    pass


def test_slow_without_a_limit():
    time.sleep(4)
"""


def run_pytest(tmp_path: Path, source: str) -> tuple[subprocess.CompletedProcess[str], float]:
    (tmp_path / "test_child.py").write_text(source)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *WATCHDOG,
            "test_child.py",
        ],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=90,
    )
    return result, time.monotonic() - started


def test_a_test_hung_where_pytest_timeout_cannot_reach_ends_the_run_with_its_stack(
    tmp_path: Path,
) -> None:
    result, elapsed = run_pytest(tmp_path, STUCK)
    assert result.returncode != 0
    assert elapsed < 30, "the run must end at the limit plus the grace, not at the test's end"
    assert "Timeout (0:00:03)!" in result.stderr
    assert "test_stuck_where_no_signal_reaches" in result.stderr


def test_a_test_done_in_time_disarms_it(tmp_path: Path) -> None:
    result, _ = run_pytest(tmp_path, IN_TIME)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
