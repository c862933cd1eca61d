import asyncio

import pytest

from pedidos.runtime.batching import MicroBatcher


def test_concurrent_submissions_share_one_batch_and_get_their_own_result() -> None:
    batches: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        batches.append(items)
        return [i * 2 for i in items]

    async def scenario() -> list[int]:
        batcher = MicroBatcher(double, max_size=100, max_delay_s=0.01)
        return list(await asyncio.gather(*(batcher.submit(i) for i in range(10))))

    assert asyncio.run(scenario()) == [i * 2 for i in range(10)]
    assert batches == [list(range(10))]


def test_a_full_batch_goes_at_once_and_failures_reach_every_caller() -> None:
    calls: list[int] = []

    async def fail(items: list[int]) -> list[int]:
        calls.append(len(items))
        raise RuntimeError("down")

    async def scenario() -> None:
        batcher = MicroBatcher(fail, max_size=3, max_delay_s=10)
        futures = [batcher.submit(i) for i in range(3)]
        for future in futures:
            with pytest.raises(RuntimeError, match="down"):
                await asyncio.wait_for(future, 1)

    asyncio.run(scenario())
    assert calls == [3]
