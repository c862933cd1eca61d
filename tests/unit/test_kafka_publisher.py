"""KafkaPublisher with a real librdkafka and no broker: a failed delivery is an awaitable
PublishError, one nobody awaits is not reported by asyncio as a lost exception, and every answer
is told to the observer and leaves `awaiting`. With a broker: tests/integration/
test_publisher_partitions.py."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError

from devkit.net import free_port
from pedidos.adapters.kafka.publisher import (
    MAX_UNCONFIRMED_RESENDS,
    KafkaPublisher,
    PublishError,
    producer_config,
)
from tests.unit.fakes import DeliveredMessage


def test_a_delivery_that_times_out_fails_quietly_when_nobody_awaits_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> None:
        # Nothing listens there: librdkafka gives up on the record after message.timeout.ms.
        publisher = KafkaPublisher(producer_config(f"127.0.0.1:{free_port()}", "test", 0.3))
        try:
            awaited = publisher.publish("Pedidos", "k1", b"{}", [])
            abandoned = publisher.publish("Pedidos", "k2", b"{}", [])
            with pytest.raises(PublishError):
                await asyncio.wait_for(awaited, 10)
            await asyncio.wait_for(asyncio.wait((abandoned,)), 10)
            assert abandoned.done()  # done() does not count as retrieving the error
            del abandoned
            gc.collect()
            await asyncio.sleep(0)
        finally:
            publisher.close(0.1)

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(run())
    assert "never retrieved" not in caplog.text


def test_a_flush_gives_up_once_no_record_is_answered_for_the_stall_time() -> None:
    """A stop's flush with the broker gone waits `stall_s`, not its whole timeout: nothing
    listens at the address, and the records would live for 30 s (message.timeout.ms)."""

    async def run() -> tuple[float, int]:
        publisher = KafkaPublisher(producer_config(f"127.0.0.1:{free_port()}", "test", 30))
        for n in range(3):
            publisher.publish("Pedidos", f"k{n}", b"{}", [])
        began = time.monotonic()
        remaining = await asyncio.to_thread(publisher.close, 10, 0.3)
        return time.monotonic() - began, remaining

    took, remaining = asyncio.run(run())
    assert 0.3 <= took < 3
    assert remaining == 3


class Observer:
    def __init__(self) -> None:
        self.answers: list[tuple[str, float, bool]] = []

    def settled(self, topic: str, seconds: float, failed: bool) -> None:
        self.answers.append((topic, seconds, failed))


def test_every_answer_is_observed_once_and_only_queued_records_await_one() -> None:
    async def run() -> None:
        observer = Observer()
        config = producer_config(f"127.0.0.1:{free_port()}", "test", 0.3)
        config["queue.buffering.max.messages"] = 2
        publisher = KafkaPublisher(config, observer)
        try:
            queued = [publisher.publish("Pedidos", key, b"{}", []) for key in ("k1", "k2")]
            refused = publisher.publish("Pedidos", "k3", b"{}", [])  # the local queue is full
            assert isinstance(refused.exception(), PublishError)
            assert (publisher.awaiting, observer.answers) == (2, [("Pedidos", 0.0, True)])
            await asyncio.wait_for(asyncio.wait(queued), 10)
            assert publisher.awaiting == 0
            later = observer.answers[1:]
            assert [(topic, failed) for topic, _, failed in later] == [("Pedidos", True)] * 2
            # Timed from publish to the answer: message.timeout.ms is 300.
            assert all(0.25 <= seconds < 10 for _, seconds, _ in later)
        finally:
            publisher.close(0.1)

    asyncio.run(run())


def renewals(caplog: pytest.LogCaptureFixture) -> int:
    return caplog.text.count("replacing it with a new producer")


@pytest.mark.parametrize(("renew_after", "replaced"), [(2, True), (None, False)])
def test_a_producer_whose_records_keep_timing_out_is_replaced_when_asked(
    caplog: pytest.LogCaptureFixture, renew_after: int | None, replaced: bool
) -> None:
    async def run() -> None:
        config = producer_config(f"127.0.0.1:{free_port()}", "test", 0.3)
        publisher = KafkaPublisher(config, renew_after_timeouts=renew_after)
        first = publisher._producer
        try:
            for key in ("k1", "k2"):  # one after the other: two timeouts in a row
                with pytest.raises(PublishError, match="timed out"):
                    await asyncio.wait_for(publisher.publish("Pedidos", key, b"{}", []), 10)
            await asyncio.sleep(0.3)  # the poll thread's next round
            assert (publisher._producer is not first) == replaced
            # The next record goes to whichever producer is current, and is answered.
            with pytest.raises(PublishError):
                await asyncio.wait_for(publisher.publish("Pedidos", "k3", b"{}", []), 10)
            assert publisher.awaiting == 0
        finally:
            publisher.close(0.1)

    with caplog.at_level(logging.WARNING, logger="pedidos.adapters.kafka.publisher"):
        asyncio.run(run())
    assert renewals(caplog) == (1 if replaced else 0)


class ScriptedProducer:
    """Stands in for librdkafka's producer: keeps each record's delivery callback, so the test
    answers each record itself (a stuck partition beside a healthy one needs a broker that
    misbehaves on purpose, which no real one here does)."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[KafkaError | None, Any], None]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.callbacks.append(kwargs["on_delivery"])

    def poll(self, timeout: float) -> int:
        time.sleep(timeout)
        return 0

    def purge(self) -> None:
        pass

    def flush(self, timeout: float) -> int:
        return 0

    def __len__(self) -> int:
        return 0


def scripted_publisher(
    renew_after_timeouts: int | None = None,
) -> tuple[KafkaPublisher, ScriptedProducer]:
    config = producer_config(f"127.0.0.1:{free_port()}", "test", 30)
    publisher = KafkaPublisher(config, renew_after_timeouts=renew_after_timeouts)
    scripted = ScriptedProducer()
    publisher._producer.flush(0)
    publisher._producer = scripted  # type: ignore[assignment]
    return publisher, scripted


def test_one_partition_timing_out_while_another_delivers_is_still_a_stuck_producer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)

    async def run() -> None:
        publisher, scripted = scripted_publisher(renew_after_timeouts=2)
        try:
            for _ in range(4):
                publisher.publish("Pedidos.estados", "k", b"{}", [])
            first, healthy, second, more = scripted.callbacks
            first(timed_out, DeliveredMessage(1))
            healthy(None, DeliveredMessage(0))  # another partition delivers in between
            await asyncio.sleep(0.3)
            assert publisher._producer is scripted
            second(timed_out, DeliveredMessage(1))
            await asyncio.sleep(0.3)
            assert publisher._producer is not scripted
            # A late answer from the retired producer is still settled.
            more(None, DeliveredMessage(1))
            await asyncio.sleep(0.3)
            assert publisher.awaiting == 0
        finally:
            publisher.close(0.1)

    with caplog.at_level(logging.WARNING, logger="pedidos.adapters.kafka.publisher"):
        asyncio.run(run())
    assert renewals(caplog) == 1


def test_closing_right_after_a_replacement_settles_the_records_it_purged() -> None:
    async def run() -> None:
        config = producer_config(f"127.0.0.1:{free_port()}", "test", 30)
        publisher = KafkaPublisher(config, renew_after_timeouts=2)
        # The poll thread stopped, so only close() can report what the replacement purged.
        publisher._stop.set()
        publisher._poller.join()
        pending = publisher.publish("Pedidos.estados", "k", b"{}", [])
        publisher._renew()
        publisher.close(0.1)
        with pytest.raises(PublishError, match=r"(?i)purged"):
            await asyncio.wait_for(pending, 5)

    asyncio.run(run())


# What librdkafka reports for a record it acknowledged only because a later batch was stored.
NO_OFFSET = -1001  # RD_KAFKA_OFFSET_INVALID


@pytest.mark.parametrize("offsetless_acks", [1, 3])
def test_an_acknowledgement_without_an_offset_sends_the_record_again(
    caplog: pytest.LogCaptureFixture, offsetless_acks: int
) -> None:
    """A broker restart made librdkafka report two records delivered that the partition never
    held (a later batch was stored, so it inferred they were): the record goes out again and
    its caller sees only the acknowledgement that says where it was stored. Scripted: no real
    broker here can be made to lose a request on cue, and this is librdkafka's report."""

    async def run() -> None:
        publisher, scripted = scripted_publisher()
        try:
            delivered = publisher.publish("Pedidos.estados", "k", b"{}", [], 1)
            for sent in range(offsetless_acks):
                scripted.callbacks[sent](None, DeliveredMessage(1, NO_OFFSET))
            assert len(scripted.callbacks) == offsetless_acks + 1
            await asyncio.sleep(0.2)
            assert not delivered.done()
            assert publisher.awaiting == 1
            scripted.callbacks[-1](None, DeliveredMessage(1, 7))
            stored = await asyncio.wait_for(delivered, 5)
            assert (stored.partition, stored.offset) == (1, 7)
            assert publisher.awaiting == 0
        finally:
            publisher.close(0.1)

    with caplog.at_level(logging.WARNING, logger="pedidos.adapters.kafka.publisher"):
        asyncio.run(run())
    assert caplog.text.count("acknowledged without an offset") == offsetless_acks


def test_a_record_never_acknowledged_with_an_offset_fails_in_the_end() -> None:
    async def run() -> None:
        publisher, scripted = scripted_publisher()
        try:
            delivered = publisher.publish("Pedidos.estados", "k", b"{}", [])
            for sent in range(MAX_UNCONFIRMED_RESENDS + 1):
                scripted.callbacks[sent](None, DeliveredMessage(1, NO_OFFSET))
            assert len(scripted.callbacks) == MAX_UNCONFIRMED_RESENDS + 1
            with pytest.raises(PublishError, match="without an offset"):
                await asyncio.wait_for(delivered, 5)
            assert publisher.awaiting == 0
        finally:
            publisher.close(0.1)

    asyncio.run(run())


def test_a_settled_record_leaves_no_garbage_cycle() -> None:
    """Each record's callback is freed by reference counting once answered: a callback able to
    send its record again had made each record a cycle only the collector frees, which cost
    3 to 10 µs of CPU per record against a real broker."""

    async def run() -> int:
        publisher, scripted = scripted_publisher()
        try:
            gc.collect()
            gc.disable()
            pending = [publisher.publish("Pedidos", f"k{n}", b"{}", [], 0) for n in range(200)]
            for answer in scripted.callbacks:
                answer(None, DeliveredMessage(1, 3))
            scripted.callbacks.clear()
            await asyncio.wait_for(asyncio.gather(*pending), 5)
            del pending, answer
            return gc.collect()
        finally:
            gc.enable()
            publisher.close(0.1)

    assert asyncio.run(run()) < 50
