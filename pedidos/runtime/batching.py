"""Coalesces many concurrent single-item calls into one batched call (bulk writes, mget)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from pedidos.runtime.event_loop import BoundLoop

Item = TypeVar("Item")
Result = TypeVar("Result")


class MicroBatcher(Generic[Item, Result]):
    """`await submit(item)` returns that item's result from `run_batch(items)`.

    An exception in `run_batch`'s result list fails that item alone; one it raises fails all.
    A batch is due when `max_size` items wait, or when the first of them waited `max_delay_s`
    and the interval passed since the last batch started. It starts once one of the
    `concurrency` slots is free and takes every waiting item (up to `max_size`): items
    arriving while all slots are busy or the interval runs ride together in the next batch.

    The interval is `interval_s`; with `interval_per_item_s` it is that much per item of the
    last batch beyond its first, at least `min_interval_s` and at most `interval_s`: under load
    the batches grow until the interval reaches its bound, so the batches per second stay
    bounded and each one's cost is shared by ever more items. Without the floor, items arriving
    slower than one per `interval_per_item_s` shrank every batch to one item (at 500 a second
    and below, one request each); a caller that knows an item is alone says so with `hurry`.
    `max_delay_s=0` with an interval adds no latency when idle.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        *,
        max_size: int = 500,
        max_delay_s: float = 0.01,
        concurrency: int = 2,
        interval_s: float = 0.0,
        interval_per_item_s: float | None = None,
        min_interval_s: float = 0.0,
    ) -> None:
        self._run_batch = run_batch
        self._max_size = max_size
        self._max_delay_s = max_delay_s
        self._concurrency = concurrency
        self._max_interval_s = interval_s
        self._interval_per_item_s = interval_per_item_s
        self._min_interval_s = min(min_interval_s, interval_s)
        self._interval_s = interval_s  # after the last batch
        self._running = 0
        self._items: list[Item] = []
        self._futures: list[asyncio.Future[Result]] = []
        self._due = False  # the waiting items may start at the next free slot
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0  # when `_timer` fires
        self._last_start = float("-inf")
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = BoundLoop()

    def submit(self, item: Item) -> asyncio.Future[Result]:
        loop = self._loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if len(self._items) >= self._max_size:
            self._make_due()
        elif not self._due:
            due_at = loop.time() + self._max_delay_s
            self._wake_at(max(due_at, self._last_start + self._interval_s))
        return future

    def _wake_at(self, deadline: float) -> None:
        if self._timer is not None:
            if self._deadline <= deadline:
                return
            self._timer.cancel()
        self._deadline = deadline
        self._timer = self._loop().call_at(deadline, self._make_due)

    def _make_due(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = True
        self._start()

    def _start(self) -> None:
        loop = self._loop()
        while self._due and self._items and self._running < self._concurrency:
            next_start = self._last_start + self._interval_s
            if len(self._items) < self._max_size and next_start > loop.time():
                self._due = False  # a full batch goes at once; any other waits for the interval
                self._wake_at(next_start)
                return
            self._last_start = loop.time()
            items, futures = self._items, self._futures
            if len(items) > self._max_size:
                self._items, self._futures = items[self._max_size :], futures[self._max_size :]
                items, futures = items[: self._max_size], futures[: self._max_size]
            else:
                self._items, self._futures = [], []
            self._interval_s = self._max_interval_s
            if self._interval_per_item_s is not None:
                extra = len(items) - 1
                self._interval_s = min(
                    self._interval_s,
                    max(self._min_interval_s, extra * self._interval_per_item_s),
                )
            self._running += 1
            task = loop.create_task(self._execute(items, futures))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not self._items:
            self._due = False

    async def _execute(self, items: list[Item], futures: list[asyncio.Future[Result]]) -> None:
        try:
            results = await self._run_batch(items)
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._running -= 1
            self._start()
        for future, result in zip(futures, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def hurry(self) -> None:
        """Start the waiting items as soon as a slot is free, without the interval: for a caller
        that knows nothing will join them meanwhile. The interval after them is as usual."""
        if self._items:
            self._interval_s = 0.0
            self._make_due()

    async def drain(self) -> None:
        """Starts every waiting item now and waits until all batches are done."""
        bound, per_item = self._max_interval_s, self._interval_per_item_s
        self._max_interval_s, self._interval_per_item_s = 0.0, None  # nothing to wait for
        self._interval_s = 0.0
        try:
            while self._items or self._tasks:
                if self._items:
                    self._make_due()
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        finally:
            self._max_interval_s, self._interval_per_item_s = bound, per_item
