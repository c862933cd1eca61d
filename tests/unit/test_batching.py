import asyncio

import pytest

from pedidos.runtime.batching import MicroBatcher


class BatchStarts:
    """A batch runner that notes when each batch started and its items."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, list[int]]] = []

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append((asyncio.get_running_loop().time(), items))
        return items

    @property
    def starts(self) -> list[tuple[float, int]]:
        """(start time, size) of each batch."""
        return [(at, len(items)) for at, items in self.batches]


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


def test_items_arriving_within_the_interval_share_the_next_batch() -> None:
    """The first item goes at once (nothing started recently); the ones that come while the
    interval runs wait for its end and go together, not one batch each."""
    record = BatchStarts()

    async def scenario() -> None:
        batcher = MicroBatcher(record, max_delay_s=0.0, concurrency=1, interval_s=0.2)
        assert await batcher.submit(0) == 0
        later = []
        for i in range(1, 4):
            later.append(batcher.submit(i))
            await asyncio.sleep(0.01)  # separate loop turns, each well inside the interval
        assert await asyncio.gather(*later) == [1, 2, 3]

    asyncio.run(scenario())
    assert [items for _, items in record.batches] == [[0], [1, 2, 3]]


def test_items_arriving_while_the_only_slot_is_busy_go_together_once_it_is_free() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event

    async def scenario() -> None:
        gate = release()

        async def slow(items: list[int]) -> list[int]:
            batches.append(items)
            await gate.wait()
            return items

        batcher = MicroBatcher(slow, max_delay_s=0.0, concurrency=1)
        first = batcher.submit(0)
        await asyncio.sleep(0.01)  # the first batch is in flight
        rest = [batcher.submit(i) for i in range(1, 3)]
        await asyncio.sleep(0.01)
        gate.set()
        assert await asyncio.gather(first, *rest) == [0, 1, 2]

    asyncio.run(scenario())
    assert batches == [[0], [1, 2]]


def test_the_interval_follows_the_last_batch_size_up_to_its_bound() -> None:
    """A batch of one lets a lone item after it go almost at once; after a big batch the
    next waits out the whole bound, so a loaded batcher sends few, large batches."""
    record = BatchStarts()

    async def scenario() -> None:
        batcher = MicroBatcher(
            record, max_delay_s=0.0, concurrency=1, interval_s=0.5, interval_per_item_s=0.01
        )
        await batcher.submit(0)
        await asyncio.sleep(0.05)  # past 1 x 10 ms, well inside the bound
        await batcher.submit(1)
        await asyncio.gather(*(batcher.submit(i) for i in range(100)))
        await batcher.submit(2)

    asyncio.run(scenario())
    (t0, n0), (t1, n1), (t2, n2), (t3, n3) = record.starts
    assert (n0, n1, n2, n3) == (1, 1, 100, 1)
    assert t1 - t0 < 0.1  # not held for the 0.5 s bound
    assert t3 - t2 >= 0.49  # 100 items x 10 ms, capped at 0.5 s


def test_hurried_items_skip_the_interval_and_the_next_batch_waits_as_usual() -> None:
    """`hurry` is for a caller that knows nothing will join the waiting items: they go at once
    instead of at the end of the interval; the interval after them applies again."""
    record = BatchStarts()

    async def scenario() -> None:
        batcher = MicroBatcher(record, max_delay_s=0.0, concurrency=1, interval_s=0.5)
        await batcher.submit(0)  # the interval starts
        waiting = [batcher.submit(i) for i in (1, 2)]
        await asyncio.sleep(0.05)
        batcher.hurry()
        assert await asyncio.gather(*waiting) == [1, 2]
        await batcher.submit(3)

    asyncio.run(scenario())
    (t0, first), (t1, hurried), (t2, after) = record.batches
    assert (first, hurried, after) == ([0], [1, 2], [3])
    assert t1 - t0 < 0.2  # not held for the 0.5 s interval
    assert t2 - t1 >= 0.49  # the interval after the hurried batch runs as usual


def test_hurry_with_nothing_waiting_changes_nothing() -> None:
    record = BatchStarts()

    async def scenario() -> None:
        batcher = MicroBatcher(record, max_delay_s=0.0, concurrency=1, interval_s=0.3)
        await batcher.submit(0)
        batcher.hurry()
        await batcher.submit(1)

    asyncio.run(scenario())
    (t0, _), (t1, _) = record.starts
    assert t1 - t0 >= 0.29


def test_after_a_batch_of_one_the_next_item_goes_at_once() -> None:
    """An item that had no company is alone: the next one, right behind it, does not wait the
    per-item interval (an order walking alone writes its event, then its current state);
    after a batch of two it does."""
    record = BatchStarts()

    async def scenario() -> None:
        batcher = MicroBatcher(
            record, max_delay_s=0.0, concurrency=1, interval_s=1.0, interval_per_item_s=0.5
        )
        await batcher.submit(0)
        await batcher.submit(1)
        await asyncio.gather(batcher.submit(2), batcher.submit(3))
        await batcher.submit(4)

    asyncio.run(scenario())
    (t0, _), (t1, _), (t2, two), (t3, _) = record.starts
    assert two == 2
    assert t1 - t0 < 0.1
    assert t2 - t1 < 0.1
    assert t3 - t2 >= 0.49  # one item beyond the first: 0.5 s


def test_the_interval_after_any_batch_is_at_least_its_floor() -> None:
    """With `min_interval_s`, items arriving one at a time still share batches: after a batch
    of one the next waits the floor, not zero (below one item per `interval_per_item_s` every
    batch had shrunk to one item, one request each). The bound still caps it."""
    record = BatchStarts()

    async def scenario() -> None:
        batcher = MicroBatcher(
            record,
            max_delay_s=0.0,
            concurrency=1,
            interval_s=0.5,
            interval_per_item_s=0.01,
            min_interval_s=0.2,
        )
        await batcher.submit(0)
        await asyncio.gather(*(batcher.submit(i) for i in (1, 2)))
        await asyncio.gather(*(batcher.submit(i) for i in range(100)))
        await batcher.submit(3)

    asyncio.run(scenario())
    (t0, n0), (t1, n1), (t2, n2), (t3, n3) = record.starts
    assert (n0, n1, n2, n3) == (1, 2, 100, 1)
    assert t1 - t0 >= 0.19  # the floor, though the batch before had one item
    assert t2 - t1 >= 0.19  # two items x 10 ms, raised to the floor
    assert 0.49 <= t3 - t2 < 0.9  # 100 items x 10 ms, capped at the bound
