"""The one backoff policy and retry loop every component uses.

Capped exponential delays with jitter, so that many callers retrying the same outage do not
come back in waves. The first attempt runs without any setup, so a call that succeeds costs
nothing extra (the consumer retries around every e-mail, document and state record).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.2
    max_s: float = 10.0

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Pause before retry number `retry` (1-based): initial·2^(retry-1), capped, ×[0.5, 1.5)."""
        base = min(self.max_s, self.initial_s * 2 ** min(retry - 1, 62))
        return base * (0.5 + (rng or random).random())

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        retry = 1
        while True:
            yield self.delay(retry, rng)
            retry += 1


async def retry_async(
    what: str,
    call: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    backoff: Backoff = Backoff(),
    attempts: int | None = None,
    logger: logging.Logger = log,
) -> T:
    """`call()` until it returns, retrying `retry_on` errors after a backoff pause.

    With `attempts`, the last error is raised once that many calls failed; without, it
    retries for ever (the caller bounds it with a timeout or cancellation)."""
    attempt = 1
    while True:
        try:
            return await call()
        except retry_on as exc:
            if attempts is not None and attempt >= attempts:
                raise
            delay = backoff.delay(attempt)
            logger.warning("%s failed: %s; retrying in %.1fs", what, exc, delay)
        await asyncio.sleep(delay)
        attempt += 1


def retry_blocking(
    what: str,
    call: Callable[[], T],
    *,
    retry_on: tuple[type[BaseException], ...],
    backoff: Backoff = Backoff(),
    attempts: int | None = None,
    within_s: float | None = None,
    logger: logging.Logger = log,
) -> T:
    """The synchronous twin of `retry_async`, for the admin commands.

    With `within_s`, the last error is raised once that many seconds have passed since the
    first call (nothing can cancel a blocking loop from outside)."""
    deadline = None if within_s is None else time.monotonic() + within_s
    attempt = 1
    while True:
        try:
            return call()
        except retry_on as exc:
            if attempts is not None and attempt >= attempts:
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise
            delay = backoff.delay(attempt)
            logger.warning("%s failed: %s; retrying in %.1fs", what, exc, delay)
        time.sleep(delay)
        attempt += 1
