"""Answering an asyncio task from another thread (the SMTP senders, the Kafka consumer thread)."""

from __future__ import annotations

import asyncio
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
