"""A batch may fail single items: only their callers see the error, the others their result."""

from __future__ import annotations

import asyncio

from pedidos.batching import MicroBatcher


def test_an_item_the_batch_refused_fails_alone() -> None:
    async def halve_even(items: list[int]) -> list[int | BaseException]:
        return [i // 2 if i % 2 == 0 else ValueError(f"{i} is odd") for i in items]

    async def scenario() -> list[int | BaseException]:
        batcher = MicroBatcher(halve_even, max_size=100, max_delay_s=0.01)
        return list(
            await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
        )

    first, odd, second, other_odd = asyncio.run(scenario())
    assert (first, second) == (0, 1)
    assert isinstance(odd, ValueError)
    assert str(odd) == "1 is odd"
    assert isinstance(other_odd, ValueError)
    assert str(other_odd) == "3 is odd"
