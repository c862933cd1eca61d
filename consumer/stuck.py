"""A consumer whose Kafka thread is stuck in one call stops, so that a restart joins the group.

Every librdkafka call of the consumer runs on one thread (`KafkaRecordSource`), rebalance
callbacks included. If one call never returns (a commit waiting for a coordinator that never
answers; an assign() librdkafka never answers, as seen in close()), nothing is fetched or
committed again while the process looks alive. Past `max.poll.interval.ms` librdkafka leaves the
group itself and the partitions go to other members: this process would hold nothing and do
nothing for good. Stopping it, with every thread's stack in its log, lets the orchestrator start
it afresh (compose: `restart: unless-stopped`); what it had not committed is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
from typing import Protocol

from pedidos.adapters.kafka.record_source import REBALANCE_TIMEOUT_MS

log = logging.getLogger(__name__)

# librdkafka's max.poll.interval.ms here: the longest a legitimate call takes is a revoke's
# wait for steps doing effects (15 s) plus its synchronous commit.
STUCK_LIMIT_S = REBALANCE_TIMEOUT_MS / 1000
CHECK_EVERY_S = 5.0
# The exit code of a consumer stopped for it: EX_TEMPFAIL, a restart may well succeed.
EXIT_STUCK = 75


class BusyThread(Protocol):
    def busy(self) -> tuple[str, float] | None: ...


def stuck_call(source: BusyThread, limit_s: float | None = None) -> str | None:
    """What the consumer thread is stuck in, if a call has run past `limit_s` (by default
    STUCK_LIMIT_S)."""
    busy = source.busy()
    if busy is None or busy[1] <= (STUCK_LIMIT_S if limit_s is None else limit_s):
        return None
    name, seconds = busy
    return f"the Kafka consumer thread has been in {name}() for {seconds:.1f} s"


async def wait_until_stuck(
    source: BusyThread,
    stop: asyncio.Event,
    limit_s: float | None = None,
    every_s: float | None = None,
) -> str | None:
    """Once a call has run past `limit_s` (STUCK_LIMIT_S): says so in the log with every
    thread's stack and returns what it is stuck in. None once `stop` is set. Checked every
    `every_s` (CHECK_EVERY_S)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CHECK_EVERY_S if every_s is None else every_s)
        if stop.is_set():
            return None
        why = stuck_call(source, limit_s)
        if why is not None:
            log.error(
                "%s, past max.poll.interval.ms: librdkafka has left the group and this process "
                "would never fetch again; stopping so that a restart joins it afresh (every "
                "thread's stack follows)",
                why,
            )
            faulthandler.dump_traceback(all_threads=True)
            return why
    return None
