"""GetOrder and WatchOrder: the current state from the order lookup, changes from one shared feed.

The process's single state feed (the `StateFeed` port) hands its batches to
`StateFanout.publish`, which keeps the latest state record of recently changed orders and pushes
each one into the queues of the watchers of that order: a watcher costs one lookup when it
starts and nothing after. `OrderTracker` answers both calls from the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterator
from datetime import datetime

from cachetools import LRUCache

from pedidos.domain.order import InvalidOrder, Order, validate_order_id
from pedidos.domain.states import OrderState
from pedidos.ports import CorruptOrderDocument, LookupUnavailable, OrderLookup
from pedidos.services.errors import Reason, TrackingError
from pedidos.wire.records import StateReached

log = logging.getLogger(__name__)

# Orders whose latest state record is remembered: covers the gap between a state record and its
# Elasticsearch document, and orders that are too new to be indexed.
REMEMBERED_ORDERS = 20_000
# How long WatchOrder waits for an order nobody has heard of yet, when the call has no deadline;
# with one, it waits until just before the deadline.
UNKNOWN_ORDER_WAIT_S = 5.0
# Leaves time to answer NOT_FOUND before the caller's deadline expires.
DEADLINE_MARGIN_S = 0.2

Walk = tuple[tuple[OrderState, datetime], ...]


class Watch:
    """One WatchOrder call's subscription; the feed pushes into `queue` (None: shutting down)."""

    __slots__ = ("order_id", "queue")

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        self.queue: asyncio.Queue[StateReached | None] = asyncio.Queue()

    async def next(self) -> StateReached:
        record = await self.queue.get()
        if record is None:
            raise TrackingError(Reason.UNAVAILABLE, "the producer is shutting down; watch again")
        return record


class StateFanout:
    """Registry of watchers by order id, fed by the state feed. Used on the event loop only."""

    def __init__(self, remembered: int = REMEMBERED_ORDERS) -> None:
        self._latest: LRUCache[str, StateReached] = LRUCache(remembered)
        self._watches: dict[str, set[Watch]] = {}
        self._count = 0
        self.closed = False

    @property
    def watchers(self) -> int:
        return self._count

    def publish(self, batch: list[StateReached]) -> None:
        for record in batch:
            order_id = record.order.order_id
            known = self._latest.get(order_id)
            if known is None or record.state.position > known.state.position:
                self._latest[order_id] = record
            for watch in self._watches.get(order_id, ()):
                watch.queue.put_nowait(record)

    def latest(self, order_id: str) -> StateReached | None:
        return self._latest.get(order_id)

    @contextlib.contextmanager
    def subscribe(self, order_id: str) -> Iterator[Watch]:
        if self.closed:
            raise TrackingError(Reason.UNAVAILABLE, "the producer is shutting down")
        watch = Watch(order_id)
        self._watches.setdefault(order_id, set()).add(watch)
        self._count += 1
        try:
            yield watch
        finally:
            watchers = self._watches[order_id]
            watchers.discard(watch)
            if not watchers:
                del self._watches[order_id]
            self._count -= 1

    def close(self) -> None:
        """Ends every watch (they answer UNAVAILABLE) and refuses new ones."""
        self.closed = True
        for watchers in self._watches.values():
            for watch in watchers:
                watch.queue.put_nowait(None)


def walk_of(order: Order) -> Walk:
    """Every state the order reached with its time, in the walk's order."""
    return tuple(sorted(order.reached.items(), key=lambda item: item[0].position))


def _further(walk: Walk | None, other: Walk | None) -> Walk | None:
    if not walk:
        return other or None
    if not other:
        return walk
    return other if other[-1][0].position > walk[-1][0].position else walk


def checked_order_id(order_id: str) -> str:
    try:
        return validate_order_id(order_id)
    except InvalidOrder as exc:
        raise TrackingError(Reason.INVALID, str(exc)) from None


class OrderTracker:
    def __init__(
        self,
        lookup: OrderLookup,
        fanout: StateFanout,
        unknown_order_wait_s: float = UNKNOWN_ORDER_WAIT_S,
    ) -> None:
        self._lookup = lookup
        self._fanout = fanout
        self._unknown_order_wait_s = unknown_order_wait_s

    async def _indexed(self, order_id: str, time_left: float | None) -> Order | None:
        try:
            lookup = self._lookup.find(order_id)
            if time_left is None:
                return await lookup
            return await asyncio.wait_for(lookup, max(time_left - DEADLINE_MARGIN_S, 0.01))
        except (LookupUnavailable, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            log.warning("order lookup failed", extra={"order_id": order_id, "reason": reason})
            raise TrackingError(
                Reason.UNAVAILABLE, f"order store unavailable ({reason}); retry"
            ) from None
        except CorruptOrderDocument as exc:
            log.error("order lookup: %s", exc)
            raise TrackingError(Reason.CORRUPT, "the stored order is unreadable") from None

    async def get(self, raw_order_id: str, time_left: float | None) -> Order:
        order_id = checked_order_id(raw_order_id)
        indexed = await self._indexed(order_id, time_left)
        latest = self._fanout.latest(order_id)
        if latest is not None and (
            indexed is None
            or indexed.state is None
            or latest.state.position >= indexed.state.position
        ):
            # The feed is ahead of the index (the document is written in coalesced batches), or
            # level with it and more precise (the document keeps milliseconds).
            return latest.order
        if indexed is None:
            raise TrackingError(Reason.NOT_FOUND, f"order {order_id} not found")
        return indexed

    async def watch(
        self, raw_order_id: str, time_left: Callable[[], float | None]
    ) -> AsyncGenerator[tuple[OrderState, datetime], None]:
        """The current state, then each later one in order; ends after the final state."""
        order_id = checked_order_id(raw_order_id)
        # Subscribed before the lookup: a change that lands meanwhile is queued, not lost.
        with self._fanout.subscribe(order_id) as watch:
            indexed = await self._indexed(order_id, time_left())
            latest = self._fanout.latest(order_id)
            walk = _further(
                walk_of(indexed) if indexed is not None else None,
                walk_of(latest.order) if latest is not None else None,
            )
            if walk is None:
                walk = walk_of((await self._wait_for_unknown(watch, time_left())).order)
            current, at = walk[-1]
            yield current, at
            position = current.position
            while not current.is_final:
                record = await watch.next()
                for state, reached_at in walk_of(record.order):
                    # Only forward moves: duplicates and late records are dropped, and a gap
                    # (a record the feed skipped) is filled from the walk the next one carries.
                    if state.position > position:
                        current, position = state, state.position
                        yield state, reached_at

    async def _wait_for_unknown(self, watch: Watch, time_left: float | None) -> StateReached:
        wait_s = self._unknown_order_wait_s if time_left is None else time_left - DEADLINE_MARGIN_S
        try:
            return await asyncio.wait_for(watch.next(), max(wait_s, 0.01))
        except TimeoutError:
            raise TrackingError(Reason.NOT_FOUND, f"order {watch.order_id} not found") from None
