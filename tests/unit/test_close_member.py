"""close_member's order of calls, with a stand-in for the confluent-kafka Consumer: what it
guards against (librdkafka freezing in close()) is tested on the real broker in
tests/integration/test_record_source_rebalance.py; this covers what no broker does on cue."""

from __future__ import annotations

from typing import Any, cast

import pytest
from confluent_kafka import Consumer

from pedidos.adapters.kafka.consuming import close_member


class ScriptedConsumer:
    def __init__(self, batches: list[list[object]], fail: Exception | None = None) -> None:
        self.batches = batches
        self.fail = fail
        self.calls: list[str] = []

    def consume(self, num_messages: int, timeout: float) -> list[object]:
        self.calls.append(f"consume({timeout})")
        if self.fail is not None:
            raise self.fail
        return self.batches.pop(0) if self.batches else []

    def close(self) -> None:
        self.calls.append("close")


def close(consumer: ScriptedConsumer) -> None:
    close_member(cast(Consumer, cast(Any, consumer)))


def test_the_queue_is_served_without_waiting_until_empty_then_closed() -> None:
    consumer = ScriptedConsumer([[1, 2], [3]])
    close(consumer)
    assert consumer.calls == ["consume(0)", "consume(0)", "consume(0)", "close"]


def test_a_partition_that_never_runs_dry_does_not_hold_close() -> None:
    consumer = ScriptedConsumer([[n] for n in range(1_000)])
    close(consumer)
    assert consumer.calls[-1] == "close"
    assert len(consumer.calls) <= 51


def test_a_failing_callback_still_closes(caplog: pytest.LogCaptureFixture) -> None:
    consumer = ScriptedConsumer([], fail=RuntimeError("on_revoke failed"))
    close(consumer)
    assert consumer.calls == ["consume(0)", "close"]
    assert "on_revoke failed" in caplog.text
