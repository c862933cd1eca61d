"""The partitions this consumer owns and the records in flight on each, shared by the event loop
(steps) and the consumer thread (rebalance callbacks), hence the lock.

Each assignment of a partition gets a new generation: a step scheduled under an earlier one may
neither finish nor commit anything once the partition was revoked, even if it came back. The
partitions of one assignment share their generation, and no generation is used twice: the order
walk takes it as the lease under which it read a record (`OrderWalk.enter`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from consumer.offsets import PartitionOffsets

TopicPartition = tuple[str, int]
Commit = tuple[str, int, int]
# How long a revoke waits for steps that are already e-mailing/indexing on those partitions.
REVOKE_WAIT_S = 15.0


@dataclass(frozen=True, slots=True)
class Ticket:
    """One record scheduled under one assignment of its partition."""

    topic: str
    partition: int
    offset: int
    generation: int

    @property
    def source(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass
class _Assignment:
    offsets: PartitionOffsets
    generation: int
    # Steps past their stage delay, doing effects; a revoke waits for them to finish.
    working: int = 0
    revoking: bool = False


class Assignments:
    def __init__(self, revoke_wait_s: float = REVOKE_WAIT_S) -> None:
        self._revoke_wait_s = revoke_wait_s
        self._lock = threading.Lock()
        self._owned: dict[TopicPartition, _Assignment] = {}
        self._generation = 0

    # -- consumer thread -------------------------------------------------------------------
    def assign(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            self._generation += 1
            for tp in partitions:
                self._owned[tp] = _Assignment(PartitionOffsets(), self._generation)

    def revoke(self, partitions: list[TopicPartition]) -> tuple[list[Commit], int]:
        """Give `partitions` up; returns what to commit for them and how many steps were still
        doing effects when the wait ran out.

        Steps still waiting out a stage delay are handed back at once; steps doing effects finish
        first (up to the wait), so the next owner never redoes a step that is half done here."""
        with self._lock:
            for tp in partitions:
                if tp in self._owned:
                    self._owned[tp].revoking = True
        deadline = time.monotonic() + self._revoke_wait_s
        while True:
            with self._lock:
                busy = sum(a.working for tp in partitions if (a := self._owned.get(tp)))
                if busy == 0 or time.monotonic() > deadline:
                    offsets = self._collect(partitions)
                    for tp in partitions:
                        self._owned.pop(tp, None)
                    return offsets, busy
            time.sleep(0.01)

    # -- event loop ------------------------------------------------------------------------
    def leave(self) -> None:
        """Stopping: every partition is being handed over, as in a revoke. No step claims or
        starts an e-mail any more; steps already sending finish theirs and record it."""
        with self._lock:
            for assignment in self._owned.values():
                assignment.revoking = True

    def start(self, topic: str, partition: int, offset: int) -> Ticket | None:
        """Track a fetched record; None if its partition was revoked since the fetch."""
        with self._lock:
            assignment = self._owned.get((topic, partition))
            if assignment is None:
                return None
            assignment.offsets.start(offset)
            return Ticket(topic, partition, offset, assignment.generation)

    def claim(self, ticket: Ticket) -> bool:
        """The right to do effects for a record; False if its partition is leaving."""
        with self._lock:
            assignment = self._current(ticket)
            if assignment is None or assignment.revoking:
                return False
            assignment.working += 1
            return True

    def still_ours(self, ticket: Ticket) -> bool:
        """The partition is still assigned here and not being handed over."""
        with self._lock:
            assignment = self._current(ticket)
            return assignment is not None and not assignment.revoking

    def finish(self, ticket: Ticket, worked: bool = False) -> None:
        """The record is done: its offset may be committed once every earlier one is."""
        with self._lock:
            assignment = self._current(ticket)
            if assignment is not None:
                assignment.offsets.finish(ticket.offset)
                if worked:
                    assignment.working -= 1

    def release(self, ticket: Ticket) -> None:
        """A claimed record left undone (handed back, cancelled): never committed here."""
        with self._lock:
            assignment = self._current(ticket)
            if assignment is not None:
                assignment.working -= 1

    def owned(self) -> list[TopicPartition]:
        """The partitions held now (revoking ones included until they are handed over)."""
        with self._lock:
            return list(self._owned)

    def to_commit(self) -> list[Commit]:
        """The offsets that moved past a gap-free prefix since the last call."""
        with self._lock:
            return self._collect(list(self._owned))

    def _current(self, ticket: Ticket) -> _Assignment | None:
        assignment = self._owned.get((ticket.topic, ticket.partition))
        if assignment is None or assignment.generation != ticket.generation:
            return None
        return assignment

    def _collect(self, partitions: list[TopicPartition]) -> list[Commit]:
        offsets = []
        for tp in partitions:
            assignment = self._owned.get(tp)
            if assignment is None:
                continue
            offset = assignment.offsets.to_commit()
            if offset is not None:
                assignment.offsets.mark_committed(offset)
                offsets.append((tp[0], tp[1], offset))
        return offsets
