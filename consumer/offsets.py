"""Which offset of a partition may be committed when records finish out of order."""

from __future__ import annotations

import heapq


class PartitionOffsets:
    """Records start in offset order and finish in any order; commit only past a gap-free prefix."""

    def __init__(self) -> None:
        self._started: list[int] = []
        self._finished: set[int] = set()
        self._committable: int | None = None
        self._committed: int | None = None

    def start(self, offset: int) -> None:
        heapq.heappush(self._started, offset)

    def finish(self, offset: int) -> None:
        self._finished.add(offset)
        while self._started and self._started[0] in self._finished:
            done = heapq.heappop(self._started)
            self._finished.discard(done)
            self._committable = done + 1

    def to_commit(self) -> int | None:
        """The next offset to commit (Kafka's convention: last processed + 1), if it moved."""
        if self._committable is None or self._committable == self._committed:
            return None
        return self._committable

    def mark_committed(self, offset: int) -> None:
        self._committed = offset

    @property
    def in_flight(self) -> int:
        return len(self._started)
