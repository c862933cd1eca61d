"""The embedded stack the bench runs on (free ports, temp dir), a second mail sink that
discards, and one set of topics, indices and consumer group per scenario."""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from admin import setup
from admin.stack import EmbeddedStack, MailSinkOptions, StackPorts, free_port
from bench.payloads import SENDER
from pedidos.runtime.config import Settings, load_settings


@dataclass(frozen=True, slots=True)
class MailSink:
    name: str  # "maildir" or "discard"
    port: int
    maildir: Path | None  # None: the sink keeps nothing

    def inbox_count(self) -> int | None:
        if self.maildir is None:
            return None
        new = self.maildir / "new"
        if not new.exists():
            return 0
        with os.scandir(new) as entries:
            return sum(1 for _ in entries)

    def clear(self) -> None:
        """Delete the received messages (between the phases of a long run)."""
        if self.maildir is None or not (self.maildir / "new").exists():
            return
        with os.scandir(self.maildir / "new") as entries:
            for entry in entries:
                os.unlink(entry.path)


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
        self.main = EmbeddedStack(
            root / "stack",
            StackPorts(free_port(), free_port(), free_port()),
            MailSinkOptions(),
            tied_to_parent=True,
            kafka=kafka,
        )
        # Only its SMTP service is ever started; the other ports are never bound.
        self.discarding = EmbeddedStack(
            root / "discard-sink",
            StackPorts(free_port(), free_port(), free_port()),
            MailSinkOptions(discard=True),
            tied_to_parent=True,
            kafka="tansu",  # only its mail sink ever runs
        )
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
        suffix = f"{self.run_id}-{scenario}"
        listen = f"127.0.0.1:{free_port()}"
        chosen = sink or self.sinks["maildir"]
        return {
            **self.main.env(),
            "SMTP_PORT": str(chosen.port),
            "PEDIDOS_TOPIC": f"Pedidos-{suffix}",
            "PEDIDOS_STATES_TOPIC": f"Pedidos.estados-{suffix}",
            "PEDIDOS_DEAD_LETTER_TOPIC": f"Pedidos.dlq-{suffix}",
            "KAFKA_CONSUMER_GROUP": f"pedidos-consumer-{suffix}",
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "ELASTICSEARCH_EVENTS_INDEX": f"pedidos-order-events-{suffix}",
            "ELASTICSEARCH_ORDERS_INDEX": f"pedidos-orders-{suffix}",
            "GRPC_LISTEN": listen,
            "PRODUCER_ADDRESS": listen,
            "STAGE_DELAY_MIN_S": "0",
            "STAGE_DELAY_MAX_S": "0",
            "SMTP_FROM": SENDER,
            "LOG_LEVEL": "INFO",
            **self.service_env,
        }

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
        settings = load_settings(**{key.lower(): value for key, value in env.items()})
        setup.create_topics(settings)
        es = Elasticsearch(settings.elasticsearch_url)
        try:
            setup.create_index_templates(settings, es)
        finally:
            es.close()
        return settings
