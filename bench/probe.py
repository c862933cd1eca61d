"""Counts of an end-to-end run's own indices and inbox: progress and the final tally."""

from __future__ import annotations

import time
from pathlib import Path

from elasticsearch import Elasticsearch

from bench.checks import PipelineCounts
from bench.environment import MailSink
from bench.logscan import EMAIL_SENT_NEEDLE, FINALIZADO_NEEDLE, TRANSITION_NEEDLE, LogTail


class PipelineProbe:
    """Progress from the inbox and the consumer's log (cheap, no load on what is measured);
    Finalizado orders from Elasticsearch (refresh + count) once they can all be there."""

    def __init__(
        self,
        es_url: str,
        events_index: str,
        orders_index: str,
        sink: MailSink,
        consumer_log: Path | None = None,
    ) -> None:
        self._es = Elasticsearch(es_url, request_timeout=30)
        self._events = events_index
        self._orders = orders_index
        self._sink = sink
        self._inbox_before = sink.inbox_count()
        self._log = (
            LogTail(
                consumer_log,
                {
                    "sent": [TRANSITION_NEEDLE, EMAIL_SENT_NEEDLE],
                    "finalizado": [TRANSITION_NEEDLE, FINALIZADO_NEEDLE],
                },
            )
            if consumer_log
            else None
        )
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
        if now is None or self._inbox_before is None:
            return None
        return now - self._inbox_before

    def _refresh(self) -> None:
        self._es.indices.refresh(index=[self._events, self._orders])

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
        self._refresh()
        found = self._count(self._orders, "state", "Finalizado")
        self.poll_seconds.append(time.perf_counter() - started)
        return found

    def counts(self) -> PipelineCounts:
        self._refresh()
        response = self._es.search(
            index=self._events, size=0, aggs={"states": {"terms": {"field": "state", "size": 50}}}
        )
        buckets = response["aggregations"]["states"]["buckets"]
        return PipelineCounts(
            orders_total=self._count(self._orders),
            orders_finalizado=self._count(self._orders, "state", "Finalizado"),
            events_by_state={str(b["key"]): int(b["doc_count"]) for b in buckets},
            events_email_sent=self._count(self._events, "email_status", "sent"),
            inbox_messages=self.inbox_delta(),
        )
