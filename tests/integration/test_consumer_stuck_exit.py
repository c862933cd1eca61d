"""A consumer whose Kafka thread stays in one call past the limit stops with EXIT_STUCK, its log
naming the call, so that its orchestrator starts it afresh. `run_consumer` runs in this process
on the session's broker, mail sink and Elasticsearch; the call that never returns is its third
fetch, made to wait here (a hung librdkafka call cannot be caused on demand)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from consumer import app, stuck
from pedidos.adapters.kafka.record_source import ConsumedRecord, KafkaRecordSource
from pedidos.runtime.config import Settings, load_settings

pytestmark = pytest.mark.integration


def test_a_consumer_stuck_in_a_kafka_call_exits_to_be_restarted(
    pipeline_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(stuck, "STUCK_LIMIT_S", 2.0)
    monkeypatch.setattr(stuck, "CHECK_EVERY_S", 0.2)
    released = threading.Event()
    fetches: list[float] = []
    real_consume = KafkaRecordSource._consume

    def consume_and_hang(
        self: KafkaRecordSource, max_records: int, timeout_s: float
    ) -> list[ConsumedRecord]:
        fetches.append(time.monotonic())
        if len(fetches) == 3:  # past the join: the group has assigned partitions by now
            released.wait(120)
        return real_consume(self, max_records, timeout_s)

    monkeypatch.setattr(KafkaRecordSource, "_consume", consume_and_hang)
    sources: list[KafkaRecordSource] = []
    real_source = app.record_source

    def recorded_source(settings: Settings) -> KafkaRecordSource:
        sources.append(real_source(settings))
        return sources[-1]

    monkeypatch.setattr(app, "record_source", recorded_source)
    settings = load_settings(**{k.lower(): v for k, v in pipeline_env.items()})
    started = time.monotonic()
    try:
        with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as exited:
            asyncio.run(app.run_consumer(settings))
    finally:
        released.set()
        # The consumer gave up on its close (queued behind the stuck call), as a process that
        # exits right after does: here the group member must leave before the next test.
        for source in sources:
            if source.open:
                asyncio.run(asyncio.wait_for(source.close(), 30))
    assert exited.value.code == stuck.EXIT_STUCK
    assert "the Kafka consumer thread has been in consume_and_hang() for" in caplog.text
    assert "librdkafka has left the group" in caplog.text
    assert "consumer stopped" in caplog.text  # a stop, not a crash: steps and producer closed
    # Well before max.poll.interval.ms: the limit set here, plus the bounded close (10 s).
    assert time.monotonic() - started < 60
