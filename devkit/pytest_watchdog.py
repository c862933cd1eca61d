"""A pytest plugin that ends a run whose test hangs past its timeout, printing every thread's stack.

pytest-timeout raises from a SIGALRM handler, which is Python code: it never runs while the main
thread is stuck in C (a native lock, a wait for the GIL held by a thread stuck in C). One such
hang kept a CI run silent until its wall clock. faulthandler's watchdog is a C thread, so it can
still print every thread's stack and exit; the run fails at once, naming where it hung.
faulthandler has one such timer: do not combine this with pytest's `faulthandler_timeout`.
"""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Iterator

import pytest

GRACE_OPTION = "watchdog_grace"
DEFAULT_GRACE_S = "120"
_stderr_key = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        GRACE_OPTION,
        "seconds past a test's pytest-timeout limit before the watchdog prints every thread's "
        "stack and exits the run",
        default=DEFAULT_GRACE_S,
    )


def pytest_configure(config: pytest.Config) -> None:
    # Here fd 2 is still the terminal: while a test runs, output capture points it at a file
    # that an exiting process would never show.
    config.stash[_stderr_key] = os.dup(2)


def pytest_unconfigure(config: pytest.Config) -> None:
    faulthandler.cancel_dump_traceback_later()
    if _stderr_key in config.stash:
        os.close(config.stash[_stderr_key])


def limit_s(item: pytest.Item) -> float:
    """The test's pytest-timeout limit (its marker, else --timeout, else the ini value); 0 means
    none."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    option = item.config.getoption("timeout", None)
    return float(option if option is not None else item.config.getini("timeout") or 0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    limit = limit_s(item)
    if limit > 0:
        grace = float(item.config.getini(GRACE_OPTION))
        stderr = item.config.stash[_stderr_key]
        faulthandler.dump_traceback_later(limit + grace, exit=True, file=stderr)
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()
