"""The embedded stack the bench runs on (free ports, temp dir), a second mail sink that
discards, and one set of topics, indices and consumer group per scenario (devkit.scenario)."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from devkit.inbox import Inbox
from devkit.net import free_port
from devkit.scenario import prepare, scenario_env
from devkit.stack import EmbeddedStack, MailSinkOptions, StackPorts
from pedidos.runtime.config import Settings


@dataclass(frozen=True, slots=True)
class MailSink:
    name: str  # "maildir" or "discard"
    port: int
    maildir: Path | None  # None: the sink keeps nothing

    def inbox_count(self) -> int | None:
        return None if self.maildir is None else Inbox(self.maildir).count()

    def clear(self) -> None:
        """Delete the received messages (between the phases of a long run)."""
        if self.maildir is not None:
            Inbox(self.maildir).clear()


def _tied_stack(root: Path, mail: MailSinkOptions, kafka: str | None) -> EmbeddedStack:
    ports = StackPorts(free_port(), free_port(), free_port())
    return EmbeddedStack(root, ports, mail, tied_to_parent=True, kafka=kafka)


class BenchStack:
    def __init__(
        self,
        root: Path,
        service_env: dict[str, str] | None = None,
        keep_data: bool = False,
        kafka: str | None = None,
    ) -> None:
        self.root = root
        self.service_env = service_env or {}
        self.keep_data = keep_data
        self.run_id = uuid.uuid4().hex[:6]
        self.main = _tied_stack(root / "stack", MailSinkOptions(), kafka)
        # Only its mail sink ever runs (so its broker is the one that needs nothing).
        self.discarding = _tied_stack(root / "discard-sink", MailSinkOptions(discard=True), "tansu")
        self.sinks = {
            "maildir": MailSink("maildir", self.main.ports.smtp, self.main.maildir),
            "discard": MailSink("discard", self.discarding.ports.smtp, None),
        }

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def up(self) -> None:
        self.main.up()
        self.discarding.start("smtp")

    def down(self) -> None:
        self.discarding.stop("smtp")
        self.main.down()

    def pids(self) -> dict[str, int]:
        found = {
            "kafka": self.main.pid("kafka"),
            "elasticsearch": self.main.pid("elasticsearch"),
            "smtp-maildir": self.main.pid("smtp"),
            "smtp-discard": self.discarding.pid("smtp"),
        }
        return {name: pid for name, pid in found.items() if pid is not None}

    @property
    def bootstrap(self) -> str:
        return self.main.env()["KAFKA_BOOTSTRAP_SERVERS"]

    @property
    def elasticsearch_url(self) -> str:
        return self.main.env()["ELASTICSEARCH_URL"]

    def scenario_env(self, scenario: str, sink: MailSink | None = None) -> dict[str, str]:
        """Environment for one scenario's services: its own topics, indices and group."""
        return scenario_env(
            self.main.env(),
            f"{self.run_id}-{scenario}",
            SMTP_PORT=str((sink or self.sinks["maildir"]).port),
            STAGE_DELAY_MIN_S="0",
            STAGE_DELAY_MAX_S="0",
            **self.service_env,
        )

    def release(self, env: dict[str, str]) -> None:
        """Drop a finished scenario's indices (unless --keep-data): noida-db keeps every document
        in memory and slows down as it grows, so one scenario's data would slow the next."""
        if self.keep_data:
            return
        es = Elasticsearch(self.elasticsearch_url, request_timeout=60)
        # A failed cleanup must not hide what the scenario itself reported.
        with es, contextlib.suppress(ApiError, TransportError):
            for name in ("ELASTICSEARCH_EVENTS_INDEX", "ELASTICSEARCH_ORDERS_INDEX"):
                es.options(ignore_status=404).indices.delete(index=env[name])

    def prepare(self, env: dict[str, str]) -> Settings:
        """Create the scenario's topics, index templates and indices; return its settings."""
        return prepare(env)
