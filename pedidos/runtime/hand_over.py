"""Answering an asyncio task from another thread (the SMTP senders, the Kafka consumer thread)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


def settle(done: asyncio.Future[Any], result: Any, failure: BaseException | None) -> None:
    """On the loop (through `call_soon_threadsafe`): a thread's answer to the task awaiting
    `done`, its result or its failure; nothing if that task gave up on it (cancelled)."""
    if done.cancelled():
        return
    if failure is None:
        done.set_result(result)
    else:
        done.set_exception(failure)


def answer_from_thread(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[Any],
    result: Any,
    failure: BaseException | None,
) -> None:
    """From the thread: `settle` on `loop`; nothing once the loop is closed (nobody awaits)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle, done, result, failure)
