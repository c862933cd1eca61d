"""Coalesces many concurrent single-item calls into one batched call (bulk writes, mget)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class MicroBatcher(Generic[Item, Result]):
    """`await submit(item)` returns that item's result from `run_batch(items)`.

    An exception in `run_batch`'s result list fails that item alone; one it raises fails all.
    A batch starts when `max_size` items wait or `max_delay_s` has passed since the first;
    at most `concurrency` batches run at once.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        *,
        max_size: int = 500,
        max_delay_s: float = 0.01,
        concurrency: int = 2,
    ) -> None:
        self._run_batch = run_batch
        self._max_size = max_size
        self._max_delay_s = max_delay_s
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, item: Item) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self._max_size:
            self._dispatch()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_delay_s, self._dispatch)
        return future

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._execute(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        async with self._slots:
            try:
                results = await self._run_batch([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def drain(self) -> None:
        self._dispatch()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
