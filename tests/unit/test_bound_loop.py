"""BoundLoop: the running loop asked of asyncio once per loop (on Python 3.11 each ask is a
getpid() system call), and asked again for a new loop once the old one is closed."""

from __future__ import annotations

import asyncio

import pytest

from pedidos.runtime.batching import MicroBatcher
from pedidos.runtime.event_loop import BoundLoop


def counting_asks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    asks = [0]
    real = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        asks[0] += 1
        return real()

    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    return asks


def test_the_loop_is_asked_once_per_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    bound = BoundLoop()
    asks = counting_asks(monkeypatch)

    async def use() -> asyncio.AbstractEventLoop:
        loops = {bound() for _ in range(100)}
        assert len(loops) == 1
        return loops.pop()

    first = asyncio.run(use())
    assert asks == [1]
    second = asyncio.run(use())  # the first loop is closed now: asked again
    assert asks == [2]
    assert second is not first


def test_a_batcher_used_on_two_loops_one_after_the_other_batches_on_each() -> None:
    batcher = MicroBatcher[int, int](_doubled, max_delay_s=0.001)

    async def submit(items: range) -> list[int]:
        return list(await asyncio.gather(*(batcher.submit(i) for i in items)))

    assert asyncio.run(submit(range(3))) == [0, 2, 4]
    assert asyncio.run(submit(range(3, 5))) == [6, 8]


async def _doubled(items: list[int]) -> list[int]:
    return [2 * i for i in items]
