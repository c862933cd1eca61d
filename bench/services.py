"""The producer and consumer as real child processes (`python -m ...`), logs kept on disk."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from admin.stack import producer_healthy

REPO = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    pass


def _die_with_parent() -> None:
    # A killed bench must not leave services running; Linux only, harmless elsewhere.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.1)


def _pid(line: str) -> int | None:
    try:
        return int(json.loads(line)["pid"])
    except (ValueError, KeyError, TypeError):
        return None


class ServiceProcess:
    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.module = module
        self.env = env
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                preexec_fn=_die_with_parent,
            )
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ServiceError(f"{self.module} was not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout_s: float, processes: int = 1) -> None:
        """Wait until `text` is logged (by `processes` distinct worker pids, if more than one)."""

        def seen() -> bool:
            if not self.running:
                raise ServiceError(f"{self.module} exited; see {self.log_path}")
            lines = [line for line in self.log().splitlines() if text in line]
            if processes == 1:
                return bool(lines)
            return len({_pid(line) for line in lines} - {None}) >= processes

        wait_until(seen, timeout_s, f"{self.module} to log {text!r}")

    def wait_healthy(self, address: str, timeout_s: float) -> None:
        def healthy() -> bool:
            if not self.running:
                raise ServiceError(f"{self.module} exited; see {self.log_path}")
            return producer_healthy(address)

        wait_until(healthy, timeout_s, f"{self.module} health on {address}")

    def stop(self, timeout_s: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; the exit code (None if it had to be killed)."""
        if self._process is None:
            return None
        if self._process.poll() is not None:
            return self._process.returncode
        self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            return None
