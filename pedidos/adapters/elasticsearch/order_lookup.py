"""Reads an order's current-state document (`pedidos-orders`, `_id = order_id`) back as an Order.

Concurrent lookups are coalesced into one `mget` (realtime, no refresh needed).
"""

from __future__ import annotations

import logging
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import ApiError, AsyncElasticsearch

from pedidos.domain.order import Order
from pedidos.ports import LookupUnavailable
from pedidos.runtime.batching import MicroBatcher
from pedidos.wire.search_documents import order_from_document

log = logging.getLogger(__name__)


Doc = dict[str, Any]
LOOKUP_TIMEOUT_S = 5.0
_MISSING_INDEX = "index_not_found_exception"


class ElasticsearchOrderLookup:
    def __init__(
        self, client: AsyncElasticsearch, orders_index: str, timeout_s: float = LOOKUP_TIMEOUT_S
    ) -> None:
        self._client = client
        self._index = orders_index
        self._timeout_s = timeout_s
        self._batches = MicroBatcher(self._mget, max_size=500, max_delay_s=0.002, concurrency=4)

    async def find(self, order_id: str) -> Order | None:
        """The order as last indexed, None if unknown; raises LookupUnavailable."""
        doc = await self._batches.submit(order_id)
        return None if doc is None else order_from_document(doc)

    async def _mget(self, ids: list[str]) -> list[Doc | None]:
        unique = list(dict.fromkeys(ids))
        try:
            response = await self._client.options(request_timeout=self._timeout_s).mget(
                index=self._index, ids=unique
            )
        except (TransportConnectionError, ConnectionTimeout) as exc:
            raise LookupUnavailable(
                f"Elasticsearch unreachable ({exc.__class__.__name__})"
            ) from None
        except ApiError as exc:
            if exc.meta.status == 404:
                return [None] * len(ids)
            raise LookupUnavailable(f"Elasticsearch answered HTTP {exc.meta.status}") from None
        found: dict[str, Doc] = {}
        for doc in response["docs"]:
            error = doc.get("error")
            if error is not None:
                if isinstance(error, dict) and error.get("type") == _MISSING_INDEX:
                    continue  # nothing indexed yet: every order is unknown
                raise LookupUnavailable(f"Elasticsearch mget failed: {error}")
            if doc.get("found"):
                found[doc["_id"]] = doc["_source"]
        return [found.get(i) for i in ids]

    async def close(self) -> None:
        await self._batches.drain()
        await self._client.close()
