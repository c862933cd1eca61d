"""A batch may fail single items: only their callers see the error, the others their result."""

from __future__ import annotations

import asyncio

import pytest

from pedidos.runtime.batching import MicroBatcher


def test_an_item_the_batch_refused_fails_alone() -> None:
    async def halve_even(items: list[int]) -> list[int | BaseException]:
        return [i // 2 if i % 2 == 0 else ValueError(f"{i} is odd") for i in items]

    async def scenario() -> None:
        batcher = MicroBatcher(halve_even, max_size=100, max_delay_s=0.01)
        even, odd = batcher.submit(2), batcher.submit(3)
        assert await even == 1
        with pytest.raises(ValueError, match="3 is odd"):
            await odd

    asyncio.run(scenario())
