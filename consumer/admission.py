"""What the consumer fetches: nothing while it is full or the mail server is out, and no new
orders (`Pedidos` only, never the states topic) while too many started orders are unfinished.

Holding new orders back lets the states of started ones go first, so a backlog is worked off
order by order instead of every order sitting half done.
"""

from __future__ import annotations

from cachetools import TTLCache

from pedidos.services.mail_outage import MailOutage

# An open order not finished within this is forgotten (it moved to another consumer, or is stuck
# in retries that the in-flight bound already accounts for).
OPEN_ORDER_TTL_S = 600.0
# The smallest fetch near the open-orders bound: small enough not to overshoot it much.
MIN_FETCH = 16
# Hysteresis: `Pedidos` resumes at 80 % of the bound, so it is not toggled on every fetch.
RESUME_AT = 0.8


class Admission:
    def __init__(
        self,
        orders_topic: str | None = None,
        max_open_orders: int | None = None,
        mail_outage: MailOutage | None = None,
    ) -> None:
        self._orders_topic = orders_topic
        self._max_open_orders = max_open_orders
        self._mail_outage = mail_outage
        self.paused: frozenset[str] = frozenset()
        # Orders this process started and has not finished. Expiring entries keep an order
        # finished elsewhere (after a rebalance) from holding a place for good.
        self._open_orders: TTLCache[str, bool] = TTLCache(
            max(max_open_orders or 1, 1) * 2, OPEN_ORDER_TTL_S
        )
        # Set by a revoke (consumer thread): orders may now finish elsewhere, so start afresh.
        self._forget = False

    @property
    def mail_outage(self) -> bool:
        return self._mail_outage is not None and self._mail_outage.active

    def update(self, free: int, topics: frozenset[str]) -> frozenset[str] | None:
        """The topics to pause now, with `free` places for records; None if unchanged."""
        if self._forget:
            self._forget = False
            self._open_orders.clear()
        paused = self._topics_to_pause(free, topics)
        if paused == self.paused:
            return None
        self.paused = paused
        return paused

    def _topics_to_pause(self, free: int, topics: frozenset[str]) -> frozenset[str]:
        if free <= 0:
            return topics
        if self.mail_outage:
            # Every step would only wait on the mail server: fetch nothing until it is back; the
            # steps already started keep retrying and are what notices it is back.
            return topics
        if self._orders_topic is None or self._max_open_orders is None:
            return frozenset()
        limit = self._max_open_orders
        if self._orders_topic in self.paused:
            limit = int(limit * RESUME_AT)
        return frozenset({self._orders_topic}) if len(self._open_orders) >= limit else frozenset()

    def room(self, fetch_batch: int) -> int:
        """How many records one fetch may bring while new orders are still admitted."""
        if self._max_open_orders is None or self._orders_topic in self.paused:
            return fetch_batch
        return max(self._max_open_orders - len(self._open_orders), MIN_FETCH)

    def admitted(self, topic: str, order_id: str) -> None:
        """Counted from scheduling on, so one fetch cannot admit far past the bound."""
        if topic == self._orders_topic and self._max_open_orders is not None:
            self._open_orders[order_id] = True

    def closed(self, order_id: str) -> None:
        """The order's walk ended here (finished, or its record dead-lettered)."""
        self._open_orders.pop(order_id, None)

    def forget(self) -> None:
        """Called from the consumer thread on a revoke; applied by the next `update`."""
        self._forget = True

    @property
    def open_orders(self) -> int:
        return len(self._open_orders)
