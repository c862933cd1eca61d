"""Waiting for a condition with a deadline: one helper for tests, the bench and the demo."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class WaitTimeout(AssertionError):
    """What was awaited did not happen in time (an AssertionError: in a test it is a failure)."""


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call `condition` every `interval` s until it returns something truthy, and return that;
    `WaitTimeout` naming `what` after `timeout` s. Exceptions from `condition` propagate."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
