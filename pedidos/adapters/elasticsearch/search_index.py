"""Elasticsearch: one event document per (order, state) and one current document per order.

The event document doubles as the notification ledger: it is written only after the e-mail for
that state was accepted (or permanently rejected), so its existence means "do not send again".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from pedidos.domain.states import OrderState, later
from pedidos.ports import PermanentIndexError
from pedidos.runtime.batching import MicroBatcher
from pedidos.runtime.retry import Backoff, retry_async

log = logging.getLogger(__name__)


Doc = dict[str, Any]
_RETRYABLE_STATUS = {429, 502, 503, 504}


def event_id(order_id: str, state: str) -> str:
    return f"{order_id}:{state}"


class OrjsonNdjsonSerializer(NdjsonSerializer):
    """NDJSON (the bulk API's body) with orjson; elasticsearch-py ships only the JSON one."""

    def json_dumps(self, data: Any) -> bytes:
        return orjson.dumps(data, default=self.default)

    def json_loads(self, data: bytes) -> Any:
        return orjson.loads(data)


def serializers() -> dict[str, NdjsonSerializer | OrjsonSerializer]:
    """orjson for every JSON body: serialising bulk bodies was half the client's CPU."""
    # The client also maps these onto the compatibility mimetypes (vnd.elasticsearch+…).
    return {
        OrjsonSerializer.mimetype: OrjsonSerializer(),
        OrjsonNdjsonSerializer.mimetype: OrjsonNdjsonSerializer(),
    }


def connect(url: str, **auth: Any) -> AsyncElasticsearch:
    """A client for the pipeline; `auth` is `pedidos.bootstrap.search_auth`'s credentials."""
    return AsyncElasticsearch(
        url,
        request_timeout=30,
        retry_on_timeout=False,
        max_retries=0,
        serializers=serializers(),
        **auth,
    )


class _Busy(Exception):
    """Elasticsearch could not take (part of) a request now: down, 429 or a 5xx. Retried."""


# Both retry loops: whole requests, and the items of a bulk request Elasticsearch could not take.
_BACKOFF = Backoff(initial_s=0.1, max_s=5.0)


async def with_retries(what: str, call: Callable[[], Awaitable[Any]]) -> Any:
    """Run `call()` until it succeeds; transient failures back off exponentially, forever."""

    async def attempt() -> Any:
        try:
            return await call()
        except (TransportConnectionError, ConnectionTimeout) as exc:
            raise _Busy(f"unreachable ({exc.__class__.__name__})") from exc
        except ApiError as exc:
            if exc.meta.status not in _RETRYABLE_STATUS:
                raise
            raise _Busy(f"HTTP {exc.meta.status}") from exc

    return await retry_async(
        f"elasticsearch {what}", attempt, retry_on=(_Busy,), backoff=_BACKOFF, logger=log
    )


def _state(doc: Doc) -> OrderState:
    return OrderState(doc["state"])


def _merge_order_docs(older: Doc, newer: Doc) -> Doc:
    """Two current-state documents of one order in one batch as one: every state either
    reached, and the current state of whichever is further along (never back)."""
    merged = {**older, **newer}
    merged["reached_at"] = {**older.get("reached_at", {}), **newer.get("reached_at", {})}
    if later(_state(older), _state(newer)) is not _state(newer):
        for field in ("state", "state_index", "@timestamp"):
            merged[field] = older[field]
    return merged


class OrderSearchIndex:
    def __init__(self, client: AsyncElasticsearch, events_index: str, orders_index: str) -> None:
        self.client = client
        self.events_index = events_index
        self.orders_index = orders_index
        self._events = MicroBatcher(self._write_events, max_size=1000, max_delay_s=0.005)
        # One batch at a time keeps an order's current document from moving backwards.
        self._orders = MicroBatcher(
            self._write_orders, max_size=2000, max_delay_s=0.05, concurrency=1
        )
        self._lookups = MicroBatcher(self._lookup_events, max_size=1000, max_delay_s=0.005)

    # -- public, one item each; batched underneath -----------------------------------------
    def recorded_event(self, order_id: str, state: str) -> asyncio.Future[Doc | None]:
        """The event document of (order, state) if one was written, else None."""
        return self._lookups.submit(event_id(order_id, state))

    def write_event(self, doc: Doc) -> asyncio.Future[None]:
        return self._events.submit(doc)

    def write_order(self, doc: Doc) -> asyncio.Future[None]:
        return self._orders.submit(doc)

    async def drain(self) -> None:
        for batcher in (self._lookups, self._events, self._orders):
            await batcher.drain()

    async def close(self) -> None:
        await self.drain()
        await self.client.close()

    # -- batches ---------------------------------------------------------------------------
    async def _lookup_events(self, ids: list[str]) -> list[Doc | None]:
        unique = list(dict.fromkeys(ids))
        response = await with_retries(
            "mget", lambda: self.client.mget(index=self.events_index, ids=unique)
        )
        found = {d["_id"]: d["_source"] for d in response["docs"] if d.get("found")}
        return [found.get(i) for i in ids]

    async def _bulk(self, operations: list[Doc], what: str) -> list[Doc]:
        response = await with_retries(
            what, lambda: self.client.bulk(operations=operations, refresh=False)
        )
        return [next(iter(item.values())) for item in response["items"]]

    async def _bulk_until_settled(
        self, docs: list[Doc], action: Callable[[Doc], Doc], what: str
    ) -> dict[str, PermanentIndexError]:
        """Bulk-write `docs`; retry the items ES could not take now; the refused ones by order.

        409 counts as done for both callers: the document already exists (an event written by
        an earlier attempt) or is already newer (a current-state document of a later state).
        A refused document fails only its own step, not the others that shared its request.
        """
        pending = docs
        refused: dict[str, PermanentIndexError] = {}

        async def attempt() -> None:
            nonlocal pending
            operations: list[Doc] = []
            for doc in pending:
                operations += (action(doc), doc)
            results = await self._bulk(operations, what)
            retry, busy = [], set()
            for doc, result in zip(pending, results, strict=True):
                status = result.get("status", 500)
                if status in _RETRYABLE_STATUS:
                    retry.append(doc)
                    busy.add(status)
                elif status not in (200, 201, 409):
                    error = f"{what} {doc['order_id']}: {result.get('error')}"
                    refused[doc["order_id"]] = PermanentIndexError(error)
            if retry:
                statuses = ", ".join(map(str, sorted(busy)))
                pending = retry
                raise _Busy(f"{len(retry)} of {len(results)} items answered HTTP {statuses}")

        await retry_async(
            f"elasticsearch {what} bulk", attempt, retry_on=(_Busy,), backoff=_BACKOFF, logger=log
        )
        return refused

    async def _write_events(self, docs: list[Doc]) -> list[PermanentIndexError | None]:
        def create(doc: Doc) -> Doc:
            return {
                "create": {
                    "_index": self.events_index,
                    "_id": event_id(doc["order_id"], doc["state"]),
                }
            }

        refused = await self._bulk_until_settled(docs, create, "event")
        return [refused.get(doc["order_id"]) for doc in docs]

    async def _write_orders(self, docs: list[Doc]) -> list[PermanentIndexError | None]:
        coalesced: dict[str, Doc] = {}
        for doc in docs:
            previous = coalesced.get(doc["order_id"])
            coalesced[doc["order_id"]] = (
                doc if previous is None else _merge_order_docs(previous, doc)
            )

        def index_versioned(doc: Doc) -> Doc:
            # The state's rank is the document's version: a late or duplicate write of an
            # earlier state is refused (409) instead of moving the order backwards.
            return {
                "index": {
                    "_index": self.orders_index,
                    "_id": doc["order_id"],
                    "version": _state(doc).rank,
                    "version_type": "external_gte",
                }
            }

        refused = await self._bulk_until_settled(list(coalesced.values()), index_versioned, "order")
        return [refused.get(doc["order_id"]) for doc in docs]
