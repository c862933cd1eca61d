"""The narrow interfaces the services need, and the errors they may raise; adapters and
test fakes implement them, so services never import an adapter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pedidos.domain.order import Order
from pedidos.domain.states import OrderState


class WireMessage(bytes):
    """E-mail bytes that SMTP's DATA sends as they are: CRLF line ends, and no line starting
    with "." (DATA would double it). The renderer builds only such messages, so the mailer need
    not search each ~19 KB message for one (~17 µs a send); other bytes are searched."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """A rendered e-mail, ready for the wire."""

    sender: str
    recipient: str
    message_id: str
    data: bytes


class TransientMailError(Exception):
    """Worth retrying this e-mail later: the server deferred it (4xx for this recipient)."""


class MailOutageError(TransientMailError):
    """The server or our own settings fail every e-mail alike (down, 421, TLS, credentials,
    relay refused): not this message's fault, so it is retried and never dead-lettered."""


class PermanentMailError(Exception):
    """The server refused this message or recipient for good; retrying cannot help."""


class PublishError(Exception):
    """The broker did not acknowledge the record; nothing may be reported as done."""

    def __init__(self, message: str, unknown_partition: bool = False) -> None:
        super().__init__(message)
        # The record named a partition the topic does not have (topics grown unequally).
        self.unknown_partition = unknown_partition


class PermanentIndexError(Exception):
    """Elasticsearch rejected a document for good (e.g. a mapping conflict)."""


class LookupUnavailable(Exception):
    """Elasticsearch could not answer (down, overloaded, timed out)."""


class CorruptOrderDocument(Exception):
    """The stored document does not describe a valid order."""


class Renderer(Protocol):
    """Turns an order entering a state into the customer's e-mail."""

    def render(self, order: Order, state: OrderState, entered_at: datetime) -> OutgoingEmail: ...


class Mailer(Protocol):
    async def send_async(self, message: OutgoingEmail) -> None: ...


class OrderIndex(Protocol):
    def recorded_event(
        self, order_id: str, state: str
    ) -> asyncio.Future[dict[str, Any] | None]: ...
    def write_event(self, doc: dict[str, Any]) -> asyncio.Future[None]: ...
    def write_order(self, doc: dict[str, Any]) -> asyncio.Future[None]: ...
    def hurry(self) -> None:
        """Write what waits now, without waiting to batch it with more: nothing is coming."""
        ...

    def hurry_ledger(self) -> None:
        """Write the events that wait now (`write_event`, the ledger), likewise: no e-mail can
        go out until one is stored."""
        ...

    def hurry_lookups(self) -> None:
        """Look up what waits now (`recorded_event`), likewise."""
        ...


class Publisher(Protocol):
    def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> asyncio.Future[Any]: ...


# -- tracking (the producer's GetOrder / WatchOrder) -------------------------------------------


class OrderLookup(Protocol):
    async def find(self, order_id: str) -> Order | None:
        """The order as last indexed, None if unknown; raises LookupUnavailable or
        CorruptOrderDocument."""
        ...


class StateFeed(Protocol):
    """A live stream of the `pedidos.state` records written since it started; it hands them in
    batches, on its own thread, to the callback it was built with."""

    def start(self) -> None: ...
    def close(self, timeout_s: float = 10.0) -> None: ...
