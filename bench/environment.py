"""The embedded stack the bench runs on (free ports, temp dir), a second mail sink that
discards, one set of topics, indices and consumer group per scenario (devkit.scenario), and
the counts of a scenario's own indices and inbox: progress and the final tally."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from bench.checks import PipelineCounts
from bench.logscan import EMAIL_SENT_NEEDLE, FINALIZADO_NEEDLE, TRANSITION_NEEDLE, LogTail
from bench.options import Options
from devkit.inbox import Inbox
from devkit.net import free_port
from devkit.scenario import scenario_env
from devkit.stack import EmbeddedStack, MailSinkOptions, StackPorts


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
    def __init__(self, root: Path, options: Options) -> None:
        self.root = root
        self.logs_root = root / "logs"
        self.logs = self.logs_root  # this run's services' logs (see `for_run`)
        self.service_env = dict(options.service_env)
        self.keep_data = options.keep_data
        self.run_id = uuid.uuid4().hex[:6]
        self.main = _tied_stack(root / "stack", MailSinkOptions(), options.kafka)
        # Only its mail sink ever runs (so its broker is the one that needs nothing).
        self.discarding = _tied_stack(root / "discard-sink", MailSinkOptions(discard=True), "tansu")
        self.sinks = {
            "maildir": MailSink("maildir", self.main.ports.smtp, self.main.maildir),
            "discard": MailSink("discard", self.discarding.ports.smtp, None),
        }

    def for_run(self, base_run_id: str, number: int) -> None:
        """Run `number` (from 1) of several: its own run id (topics, indices) and its own log
        directory, so a service's log, its findings and the consumer's pace are that run's alone
        (three runs appended to one log made the pace's longest pause the time between runs)."""
        self.run_id = f"{base_run_id}-{number}"
        self.logs = self.logs_root / f"run-{number}"

    def up(self) -> None:
        self.main.up()
        self.discarding.start("smtp")

    def down(self) -> None:
        self.discarding.stop("smtp")
        self.main.down()

    def pids(self) -> dict[str, list[int]]:
        """The stack's processes by name, as CpuMeter takes them."""
        found = {
            "kafka": self.main.pid("kafka"),
            "elasticsearch": self.main.pid("elasticsearch"),
            "smtp-maildir": self.main.pid("smtp"),
            "smtp-discard": self.discarding.pid("smtp"),
        }
        return {name: [pid] for name, pid in found.items() if pid is not None}

    def scenario_env(
        self, scenario: str, sink: MailSink | None = None, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Environment for one scenario's services: its own topics, indices and group; `extra`
        settings win over --service-env."""
        settings = {
            "SMTP_PORT": str((sink or self.sinks["maildir"]).port),
            "STAGE_DELAY_MIN_S": "0",
            "STAGE_DELAY_MAX_S": "0",
            **self.service_env,
            **(extra or {}),
        }
        return scenario_env(self.main.env(), f"{self.run_id}-{scenario}", **settings)

    def release(self, env: dict[str, str]) -> None:
        """Drop a finished scenario's indices (unless --keep-data): noida-db keeps every document
        in memory and slows down as it grows, so one scenario's data would slow the next."""
        if self.keep_data:
            return
        es = Elasticsearch(env["ELASTICSEARCH_URL"], request_timeout=60)
        # A failed cleanup must not hide what the scenario itself reported.
        with es, contextlib.suppress(ApiError, TransportError):
            for name in ("ELASTICSEARCH_EVENTS_INDEX", "ELASTICSEARCH_ORDERS_INDEX"):
                es.options(ignore_status=404).indices.delete(index=env[name])


# What the consumer logs, counted: e-mails sent, orders Finalizado (written to ES).
_LOGGED = {
    "sent": [TRANSITION_NEEDLE, EMAIL_SENT_NEEDLE],
    "finalizado": [TRANSITION_NEEDLE, FINALIZADO_NEEDLE],
}


class PipelineProbe:
    """Progress from the inbox and the consumer's log (cheap, no load on what is measured);
    Finalizado orders from Elasticsearch (refresh + count) once they can all be there."""

    def __init__(
        self, env: dict[str, str], sink: MailSink, consumer_log: Path | None = None
    ) -> None:
        """`env`: the scenario's (its Elasticsearch and indices)."""
        self.es_url = env["ELASTICSEARCH_URL"]
        self.events_index = env["ELASTICSEARCH_EVENTS_INDEX"]
        self.orders_index = env["ELASTICSEARCH_ORDERS_INDEX"]
        self._es = Elasticsearch(self.es_url, request_timeout=30)
        self._sink = sink
        self._inbox_before = sink.inbox_count()
        self._log = None if consumer_log is None else LogTail(consumer_log, _LOGGED)
        self.poll_seconds: list[float] = []  # how long each refresh + count took
        self._logged_before = {"sent": 0, "finalizado": 0}

    def start_phase(self) -> None:
        """Count e-mails and logged transitions from now on (the inbox may have been emptied)."""
        self._inbox_before = self._sink.inbox_count()
        self._logged_before = dict(self._logged_total())

    def close(self) -> None:
        self._es.close()

    def inbox_delta(self) -> int | None:
        now = self._sink.inbox_count()
        return None if now is None or self._inbox_before is None else now - self._inbox_before

    def _count(self, index: str, field: str | None = None, value: str | None = None) -> int:
        query = {"term": {field: value}} if field else {"match_all": {}}
        return int(self._es.count(index=index, query=query)["count"])

    def _logged_total(self) -> dict[str, int]:
        return self._log.poll() if self._log else {"sent": 0, "finalizado": 0}

    def logged(self) -> dict[str, int]:
        """What the consumer logged since the phase began: e-mails sent, orders Finalizado
        (written to ES)."""
        total = self._logged_total()
        return {key: total[key] - self._logged_before[key] for key in total}

    def emails(self) -> int:
        """E-mails received by the inbox, or logged as sent when the sink discards them."""
        inbox = self.inbox_delta()
        return inbox if inbox is not None else self.logged()["sent"]

    def finalizado(self) -> int:
        started = time.perf_counter()
        self._es.indices.refresh(index=[self.events_index, self.orders_index])
        found = self._count(self.orders_index, "state", "Finalizado")
        self.poll_seconds.append(time.perf_counter() - started)
        return found

    def counts(self) -> PipelineCounts:
        self._es.indices.refresh(index=[self.events_index, self.orders_index])
        by_state = {"states": {"terms": {"field": "state", "size": 50}}}
        response = self._es.search(index=self.events_index, size=0, aggs=by_state)
        buckets = response["aggregations"]["states"]["buckets"]
        return PipelineCounts(
            orders_total=self._count(self.orders_index),
            orders_finalizado=self._count(self.orders_index, "state", "Finalizado"),
            events_by_state={str(b["key"]): int(b["doc_count"]) for b in buckets},
            events_email_sent=self._count(self.events_index, "email_status", "sent"),
            inbox_messages=self.inbox_delta(),
        )
