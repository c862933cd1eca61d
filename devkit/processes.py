"""The producer and consumer as real child processes (`python -m ...`), their logs kept on disk
for assertions and figures; `Services` starts them for one test or scenario and stops them all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from devkit import tether
from devkit.net import producer_healthy
from devkit.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent


# What a user's shell gives a command besides the project's settings: where home is, and how
# this machine reaches the network (proxies, extra CA certificates: npm and Maven need them).
MACHINE_VARIABLES = (
    "HOME",
    "XDG_CACHE_HOME",
    "PEDIDOS_CACHE_DIR",  # where the downloads (Kafka, MailDev) are kept: devkit/cache.py
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


def machine_env() -> dict[str, str]:
    """The machine's part of this process's environment (MACHINE_VARIABLES, npm's settings)."""
    return {
        name: value
        for name, value in os.environ.items()
        if name in MACHINE_VARIABLES or name.lower().startswith("npm_config_")
    }


def run_admin(
    *args: str,
    env: dict[str, str],
    inherit: bool = True,
    cwd: Path = REPO,
    timeout_s: float = 120,
) -> subprocess.CompletedProcess[str]:
    """`python -m admin ARGS` to its end, output captured as text. `env` is added to this
    process's environment, or with `inherit` False to the machine's part of it only (as a
    fresh shell would have it: `machine_env`, plus PYTHONPATH)."""
    base = dict(os.environ) if inherit else {**machine_env(), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "admin", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


class ServiceError(AssertionError):
    """A service did not do what was awaited: it exited, or did not stop when asked."""


def _pid(line: str) -> int | None:
    try:
        return int(json.loads(line)["pid"])
    except (ValueError, KeyError, TypeError):
        return None


class ServiceProcess:
    """`python -m <module>` as a child process writing to `log_dir/<log_name>.log` (by default
    `<module>-<random>.log`). `tied`: it dies with this process (see devkit/tether.py); then
    `process` is the tether, and signals go to its process group, which holds the service."""

    def __init__(
        self,
        module: str,
        env: dict[str, str],
        log_dir: Path,
        log_name: str | None = None,
        tied: bool = False,
    ) -> None:
        self.module = module
        self.env = env
        self.log_path = log_dir / f"{log_name or f'{module}-{uuid.uuid4().hex[:6]}'}.log"
        self.tied = tied
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = tether.spawn(
                [sys.executable, "-m", self.module],
                self.tied,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServiceError(f"{self.module} was not started")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once it exited (negative: the signal that ended it), else None."""
        return self.process.poll() if self.process is not None else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _exited(self) -> ServiceError:
        return ServiceError(f"{self.module} exited; see {self.log_path}")

    def wait_log(self, text: str, timeout: float = 30, count: int = 1, processes: int = 1) -> None:
        """Until `text` is logged `count` times, by `processes` distinct worker pids (with
        PRODUCER_/CONSUMER_WORKERS); fails at once if the service exits before."""

        def seen() -> bool:
            alive = self.running  # before reading: a service gone by then wrote all its log
            lines = [line for line in self.log().splitlines() if text in line]
            pids = {_pid(line) for line in lines} - {None}
            if len(lines) >= count and (processes == 1 or len(pids) >= processes):
                return True
            if not alive:
                raise self._exited()
            return False

        wait_for(seen, timeout, f"{self.module} to log {text!r}")

    def wait_healthy(self, address: str, timeout: float = 30) -> None:
        """Until the producer at `address` answers its health check with SERVING."""

        def healthy() -> bool:
            if not self.running:
                raise self._exited()
            return producer_healthy(address)

        wait_for(healthy, timeout, f"{self.module} health on {address}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            if self.tied:
                os.killpg(self.process.pid, sig)  # the tether ignores it; the service gets it
            else:
                self.process.send_signal(sig)

    def log_stacks(self) -> None:
        """A producer or consumer writes every thread's stack to its log (see run_service)."""
        if self.running:
            self.signal(signal.SIGUSR1)

    def log_tail(self, lines: int, skip: str | None = None) -> str:
        """The last `lines` lines of the log, without those containing `skip`."""
        kept = [line for line in self.log().splitlines() if skip is None or skip not in line]
        return "\n".join(kept[-lines:])

    def stop(self, timeout: float = 30, kill_late: bool = False) -> int | None:
        """SIGTERM and its exit code. Not stopped within `timeout`: killed, then `ServiceError`,
        or None with `kill_late` (the bench reports it instead of failing)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            if kill_late:
                return None
            raise ServiceError(f"{self.module} did not stop on SIGTERM within {timeout}s") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGKILL)
            self.process.wait()


class Services:
    """Starts producer/consumer processes with one environment and always cleans them up."""

    def __init__(self, env: dict[str, str], log_dir: Path, tied: bool = False) -> None:
        self.env = env
        self.log_dir = log_dir
        self.tied = tied
        self.started: list[ServiceProcess] = []

    def _start(
        self, module: str, log_name: str | None, overrides: dict[str, Any]
    ) -> ServiceProcess:
        env = {**self.env, **{key: str(value) for key, value in overrides.items()}}
        process = ServiceProcess(module, env, self.log_dir, log_name, self.tied).start()
        self.started.append(process)
        return process

    def producer(self, log_name: str | None = None, **overrides: Any) -> ServiceProcess:
        """A producer, once it answers its health check."""
        process = self._start("producer", log_name, overrides)
        process.wait_healthy(process.env["GRPC_LISTEN"], 30)
        return process

    def consumer(
        self, wait_assigned: bool = True, log_name: str | None = None, **overrides: Any
    ) -> ServiceProcess:
        """A consumer, once it (each of its workers) has partitions, unless `wait_assigned`."""
        process = self._start("consumer", log_name, overrides)
        if wait_assigned:
            workers = int(process.env.get("CONSUMER_WORKERS", "1"))
            process.wait_log("partitions assigned", timeout=60, processes=workers)
        return process

    def cleanup(self) -> None:
        for process in self.started:
            process.kill()
