"""Reading from librdkafka without waiting for a batch that is not coming."""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Consumer, Message

log = logging.getLogger(__name__)


def _no_rebalances() -> int:
    """For a caller that does not count its rebalances (one that never rebalances mid-run)."""
    return 0


def consume_available(
    consumer: Consumer,
    max_records: int,
    timeout_s: float,
    rebalances: Callable[[], int] = _no_rebalances,
) -> list[Message]:
    """Up to `max_records` messages: those queued now, or else the first to arrive within
    `timeout_s` with those that came with it.

    librdkafka's `consume(n, timeout)` returns only when it has n messages or the timeout
    ran out, so a consumer asking for a batch held each lone record for the whole timeout:
    ~5 ms on average per step of an order walking alone, 10 ms at worst.

    `rebalances` counts the group's rebalances (the caller's callbacks bump it). One
    `consume` call drops what a rebalance inside it made stale, but the first message is
    read by a call of its own: if a rebalance comes between the two, that message belongs
    to the assignment just replaced and is dropped here too. Its partition is fetched again
    from the committed offset, by whichever member owns it now; kept, it would be processed
    under the new assignment ahead of the records before it, and twice."""
    messages = consumer.consume(max_records, 0)
    if messages or timeout_s <= 0:
        return messages
    messages = consumer.consume(1, timeout_s)
    if messages and max_records > 1:
        before = rebalances()
        more = consumer.consume(max_records - 1, 0)
        if rebalances() != before:
            log.info(
                "a rebalance came while fetching: %d record(s) read before it are left to "
                "be read again",
                len(messages),
            )
            return more
        messages += more
    return messages


# Enough calls to empty what librdkafka keeps queued (queued.max.messages.kbytes) many times
# over; bounded so that a partition fetched faster than it is drained cannot hold close().
_DRAIN_CALLS = 50
_DRAIN_BATCH = 1000


def close_member(consumer: Consumer) -> None:
    """Close a group member, first serving what librdkafka queued for it while its group is up.

    close() serves a rebalance still queued from before (e.g. the partitions lost when
    `max.poll.interval.ms` ran out) by calling assign() inside confluent-kafka's rebalance
    callback, with the GIL held. If librdkafka has torn the group down by then, it drops that
    assign unanswered and close() waits for ever: the whole process freezes (seen in a fresh-
    clone CI; a probe here hung 1 close in 4, the stack in rd_kafka_op_req under
    Consumer_rebalance_cb). Served by consume() first, the assign is answered. Records it reads
    are dropped: they were never handed out and their offsets are not committed, so the next
    owner reads them from the committed offset."""
    try:
        for _ in range(_DRAIN_CALLS):
            if not consumer.consume(_DRAIN_BATCH, 0):
                break
    except Exception as exc:  # a callback's error: close() must still run
        log.warning("kafka consumer: serving its queue before close failed: %s", exc)
    consumer.close()
