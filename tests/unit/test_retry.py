from __future__ import annotations

import asyncio
import random
import time

import pytest

from pedidos.runtime.retry import Backoff, retry_async, retry_blocking

FAST = Backoff(initial_s=0.001, max_s=0.002)


def test_delays_grow_exponentially_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(initial_s=0.2, max_s=2.0)
    rng = random.Random(7)
    for retry, base in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 2.0), (40, 2.0), (200, 2.0)]:
        delays = [backoff.delay(retry, rng) for _ in range(200)]
        assert base * 0.5 <= min(delays)
        assert max(delays) < base * 1.5
        assert max(delays) - min(delays) > base * 0.5  # jittered, not a fixed pause


def test_a_transient_error_is_retried_until_the_call_succeeds() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    assert (
        asyncio.run(retry_async("flaky", flaky, retry_on=(ConnectionError,), backoff=FAST)) == "ok"
    )
    assert len(calls) == 3


def test_the_last_error_is_raised_when_attempts_run_out() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError(f"down {len(calls)}")

    with pytest.raises(ConnectionError, match="down 4"):
        retry_blocking("down", down, retry_on=(ConnectionError,), backoff=FAST, attempts=4)
    assert len(calls) == 4


def test_errors_not_named_are_not_retried() -> None:
    calls = []

    async def broken() -> None:
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        asyncio.run(retry_async("broken", broken, retry_on=(ConnectionError,), backoff=FAST))
    assert len(calls) == 1


def test_a_blocking_retry_gives_up_once_its_time_is_up() -> None:
    calls = []

    def down() -> None:
        calls.append(time.monotonic())
        raise ConnectionError(f"down {len(calls)}")

    started = time.monotonic()
    with pytest.raises(ConnectionError, match="down"):
        retry_blocking("down", down, retry_on=(ConnectionError,), backoff=FAST, within_s=0.05)
    assert len(calls) > 2
    assert 0.05 <= time.monotonic() - started < 1.0
