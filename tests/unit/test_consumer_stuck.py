"""A consumer whose Kafka thread is stuck in one call says so, is not ready, and stops (to be
restarted): checked on the real consumer thread with a call that does not return, as librdkafka's
did (a hung librdkafka call cannot be caused on demand)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import cast

import pytest

from consumer.app import _readiness
from consumer.assignments import Assignments
from consumer.stuck import stuck_call, wait_until_stuck
from pedidos.adapters.kafka.broker_probe import BrokerProbe
from pedidos.adapters.kafka.record_source import ConsumerThread


def commit_forever(released: threading.Event) -> None:
    released.wait(30)


def test_the_thread_tells_which_call_runs_and_for_how_long() -> None:
    released = threading.Event()

    async def scenario() -> None:
        thread = ConsumerThread("kafka-consumer-busy")
        assert thread.busy() is None
        answer = thread.run(commit_forever, released)
        await asyncio.sleep(0.3)
        busy = thread.busy()
        assert busy is not None
        assert busy[0] == "commit_forever"
        assert 0.2 < busy[1] < 5
        released.set()
        await answer
        assert thread.busy() is None
        thread.stop()

    asyncio.run(scenario())


def test_a_call_past_the_limit_is_named_and_the_consumer_not_ready(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released = threading.Event()

    async def scenario() -> tuple[str | None, tuple[bool, str]]:
        thread = ConsumerThread("kafka-consumer-stuck")
        thread.run(commit_forever, released)
        stop = asyncio.Event()
        ready = _readiness(Assignments(), cast(BrokerProbe, None), thread, 0.3)
        try:
            stuck = await asyncio.wait_for(wait_until_stuck(thread, stop, 0.3, 0.05), 10)
            return stuck, ready()
        finally:
            released.set()
            thread.stop()

    with caplog.at_level(logging.ERROR, logger="consumer.stuck"):
        stuck, (ready, why) = asyncio.run(scenario())
    assert stuck is not None
    assert stuck.startswith("the Kafka consumer thread has been in commit_forever() for")
    assert not ready
    assert why.startswith("the Kafka consumer thread has been in commit_forever() for")
    assert "librdkafka has left the group" in caplog.text
    assert "commit_forever" in caplog.text


def test_calls_within_the_limit_and_a_stop_asked_for_do_not_count_as_stuck() -> None:
    async def scenario() -> tuple[str | None, str | None]:
        thread = ConsumerThread("kafka-consumer-quick")
        stop = asyncio.Event()
        watch = asyncio.create_task(wait_until_stuck(thread, stop, 0.5, 0.05))
        for _ in range(10):
            await thread.run(threading.Event().wait, 0.1)  # each well within the limit
        stop.set()  # SIGTERM
        stuck = await asyncio.wait_for(watch, 5)
        thread.stop()
        return stuck, stuck_call(thread, 0.5)

    assert asyncio.run(scenario()) == (None, None)
