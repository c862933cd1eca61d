"""KafkaPublisher with a real librdkafka and no broker: a failed delivery is an awaitable
PublishError, and one nobody awaits is not reported by asyncio as a lost exception."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from devkit.net import free_port
from pedidos.adapters.kafka.publisher import KafkaPublisher, PublishError, producer_config


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
