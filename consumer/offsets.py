"""Which offset of a partition may be committed when records finish out of order."""

from __future__ import annotations

import heapq


class PartitionOffsets:
    """Records start in offset order and finish in any order; commit only past a gap-free prefix.

    An offset may be started twice (a record read again, e.g. after the fetch position was
    reset): each finish is counted, so the second copy's finish still clears it; with a set of
    finished offsets the first copy's finish absorbed the second's, and the commit stopped at
    the second copy for good."""

    def __init__(self) -> None:
        self._started: list[int] = []
        # How many copies of each offset finished and are not yet past the prefix.
        self._finished: dict[int, int] = {}
        self._committable: int | None = None
        self._committed: int | None = None

    def start(self, offset: int) -> None:
        heapq.heappush(self._started, offset)

    def finish(self, offset: int) -> None:
        finished = self._finished
        finished[offset] = finished.get(offset, 0) + 1
        while self._started and self._started[0] in finished:
            done = heapq.heappop(self._started)
            if finished[done] == 1:
                del finished[done]
            else:
                finished[done] -= 1
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
