"""The narrow interfaces the consumer's workflow needs; adapters and test fakes implement them."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from pedidos.notifications.render import OutgoingEmail


class Mailer(Protocol):
    async def send_async(self, message: OutgoingEmail) -> None: ...


class OrderIndex(Protocol):
    def recorded_event(
        self, order_id: str, state: str
    ) -> asyncio.Future[dict[str, Any] | None]: ...
    def write_event(self, doc: dict[str, Any]) -> asyncio.Future[None]: ...
    def write_order(self, doc: dict[str, Any]) -> asyncio.Future[None]: ...


class Publisher(Protocol):
    def publish(
        self,
        topic: str,
        key: str,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> asyncio.Future[Any]: ...
