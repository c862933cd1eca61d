"""LingerWhenBusy: a record goes out at once unless enough others await their ack."""

from __future__ import annotations

import asyncio

from pedidos.adapters.kafka.publisher import LingerWhenBusy
from pedidos.ports import PublishError
from tests.unit.fakes import FakePendingPublisher


class Producer(FakePendingPublisher):
    """Counts what awaits its answer as KafkaPublisher does (tests/unit/test_kafka_publisher.py):
    a record refused at once never awaits."""

    def __init__(self, undelivered: int = 0) -> None:
        super().__init__()
        self.undelivered = undelivered
        self.closed_with: float | None = None

    @property
    def awaiting(self) -> int:
        return sum(not delivery.done() for delivery in self.deliveries)

    def close(self, timeout_s: float = 10, stall_s: float | None = None) -> int:
        self.closed_with = timeout_s
        return self.undelivered


def keys(producer: Producer) -> list[str]:
    return [key for _, key, _, _ in producer.records]


def test_records_wait_to_share_a_request_only_while_enough_others_await_their_ack() -> None:
    async def run() -> None:
        at_once, busy = Producer(), Producer()
        publisher = LingerWhenBusy(at_once, busy, busy_from=2)
        first = publisher.publish("Pedidos", "a", b"{}", [])
        publisher.publish("Pedidos", "b", b"{}", [])
        publisher.publish("Pedidos", "c", b"{}", [])  # two await their ack: shares a request
        assert (keys(at_once), keys(busy)) == (["a", "b"], ["c"])
        at_once.ack(0)
        at_once.fail(PublishError("refused"), 1)  # an answer too, if not an ack
        assert first.done()
        publisher.publish("Pedidos", "d", b"{}", [])  # only "c" awaits: at once again
        assert (keys(at_once), keys(busy)) == (["a", "b", "d"], ["c"])
        publisher.publish("Pedidos", "e", b"{}", [])
        assert keys(busy) == ["c", "e"]

    asyncio.run(run())


def test_from_one_a_record_waits_only_while_another_awaits_its_ack() -> None:
    """The consumer's state records: an order walking alone publishes each step's record after
    the previous one was acknowledged, so every one goes at once."""

    async def run() -> None:
        at_once, busy = Producer(), Producer()
        publisher = LingerWhenBusy(at_once, busy, busy_from=1)
        for number, key in enumerate("abc"):
            publisher.publish("Pedidos.estados", key, b"{}", [])
            at_once.ack(number)
        assert (keys(at_once), keys(busy)) == (["a", "b", "c"], [])
        publisher.publish("Pedidos.estados", "d", b"{}", [])
        publisher.publish("Pedidos.estados", "e", b"{}", [])  # "d" awaits its ack
        assert (keys(at_once), keys(busy)) == (["a", "b", "c", "d"], ["e"])

    asyncio.run(run())


def test_close_closes_both_and_counts_what_either_left_undelivered() -> None:
    at_once, busy = Producer(undelivered=1), Producer(undelivered=2)
    assert LingerWhenBusy(at_once, busy, busy_from=4).close(5) == 3
    assert at_once.closed_with == 5
    assert busy.closed_with is not None
    assert 0 <= busy.closed_with <= 5
