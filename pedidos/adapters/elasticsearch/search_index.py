"""Elasticsearch: one event document per (order, state) and one current document per order.

The event document doubles as the notification ledger: it is written only after the e-mail for
that state was accepted (or permanently rejected), so its existence means "do not send again".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, NamedTuple, cast

import orjson
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import ApiError, AsyncElasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer
from opentelemetry import context as otel_context
from opentelemetry.trace import Link, Span, StatusCode

from pedidos.domain.states import OrderState, later
from pedidos.ports import PermanentIndexError
from pedidos.runtime import tracing
from pedidos.runtime.batching import MicroBatcher
from pedidos.runtime.retry import Backoff, retry_async

log = logging.getLogger(__name__)


Doc = dict[str, Any]
# A ledger lookup: the event document's id, and the span of the step waiting for it.
_Lookup = tuple[str, "Span | None"]
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


def _end_item_span(span: Span, done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is not None:
        error = done.exception()
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(StatusCode.ERROR, str(error))
    span.end()


@contextmanager
def _batch_span(name: str, items: list[Span], size: int) -> Iterator[Span]:
    """The span of one batched request serving many orders' steps.

    It starts a trace of its own, linked to the span of every item's step, and each of those is
    linked back to it. Parenting it to one order would put the other orders' documents into
    that order's trace and leave theirs without; the request's own spans (the elasticsearch
    client's) are its children. Without this the batch task would inherit the context of
    whichever step happened to start it."""
    with tracing.tracer().start_as_current_span(
        name,
        context=otel_context.Context(),
        links=[Link(span.get_span_context()) for span in items],
        attributes={"db.system.name": "elasticsearch", "pedidos.batch.items": size},
    ) as batch:
        for span in items:
            span.add_link(batch.get_span_context())
        yield batch


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


# A bulk answer carries only what is inspected: whether any item failed, and each item's status
# and error, not the index, id, version and shards of every item.
_BULK_FILTER = "errors,items.*.status,items.*.error"
# At most one bulk request and one lookup start per interval (see OrderSearchIndex.__init__):
# 2 ms per item of the last batch, up to 50 ms. At 10 ms fixed, a loaded consumer sent ~100
# small requests a second, and the client's cost per request was a quarter of its CPU.
_FLUSH_INTERVAL_S = 0.05
_FLUSH_INTERVAL_PER_ITEM_S = 0.002
# And at least 20 ms, however small the last batch: scaled alone, the interval fell to zero
# below 500 documents a second (50 orders), and a consumer at a steady 40 orders/s sent one bulk
# request per step (4.5 an order, ~0.45 ms of its CPU each). An order alone does not wait for
# it: the walk says it is alone (`hurry`).
_MIN_FLUSH_INTERVAL_S = 0.02
# Current states, a quarter second apart: nobody waits for them but the step's end (an order
# alone hurries them), and an order walks several steps in that time, which its one document
# then carries together (coalesced). With the events' 20-50 ms, every step wrote its own.
_ORDERS_FLUSH_INTERVAL_S = 0.25


class _Write(NamedTuple):
    """One document for a shared bulk request (its stream says which kind), and the span of the
    step waiting for it (None when tracing is off)."""

    doc: Doc
    span: Span | None = None


_BatchWriter = Callable[[list[_Write]], Awaitable[list[PermanentIndexError | None]]]


class _Entry(NamedTuple):
    """One bulk item, encoded once: retries send the same bytes again."""

    label: str  # the order, for errors
    lines: bytes  # action and source, NDJSON


def _order_action(index: str, doc: Doc) -> Doc:
    # The state's rank is the document's version: a late or duplicate write of an earlier
    # state is refused (409) instead of moving the order backwards, in this request or any.
    return {
        "index": {
            "_index": index,
            "_id": doc["order_id"],
            "version": _state(doc).rank,
            "version_type": "external_gte",
        }
    }


class OrderSearchIndex:
    def __init__(self, client: AsyncElasticsearch, events_index: str, orders_index: str) -> None:
        self.client = client
        self.events_index = events_index
        self.orders_index = orders_index
        # Events (the ledger) and current states go in two streams of bulk requests. A request
        # starts at once when none of its stream started within the interval, else at the end
        # of the interval with everything that arrived meanwhile. The events' interval follows
        # the last batch's size, from 20 to 50 ms: under load one request per 50 ms, its cost
        # shared by ever more documents; the current states' is 250 ms. Cut short by `hurry`
        # (an order alone) and, for the ledger, by `hurry_ledger` (every send slot waiting for
        # its entry). Apart, a send slot waits only for the events: overwriting current states
        # took the stand-in three quarters of a shared request's time (32 of each: 11.6 ms, the
        # events alone 3.0).
        # One request at a time per stream: an order's documents are written in the order they
        # came (and a current state carries its version: a late one cannot win).
        self._events = self._write_stream(
            self._write_events,
            interval_s=_FLUSH_INTERVAL_S,
            interval_per_item_s=_FLUSH_INTERVAL_PER_ITEM_S,
            min_interval_s=_MIN_FLUSH_INTERVAL_S,
        )
        self._orders = self._write_stream(self._write_orders, interval_s=_ORDERS_FLUSH_INTERVAL_S)
        # The ledger lookups likewise (one is on the path of every step).
        self._lookups = MicroBatcher(
            self._lookup_events,
            max_size=1000,
            max_delay_s=0.0,
            interval_s=_FLUSH_INTERVAL_S,
            interval_per_item_s=_FLUSH_INTERVAL_PER_ITEM_S,
            min_interval_s=_MIN_FLUSH_INTERVAL_S,
        )

    def _write_stream(
        self, write_batch: _BatchWriter, **interval: float
    ) -> MicroBatcher[_Write, PermanentIndexError | None]:
        async def write(writes: list[_Write]) -> list[PermanentIndexError | None]:
            spans = [w.span for w in writes if w.span is not None]
            if not spans:
                return await write_batch(writes)
            with _batch_span("index bulk", spans, len(writes)):
                return await write_batch(writes)

        return MicroBatcher(write, max_size=2000, max_delay_s=0.0, concurrency=1, **interval)

    # -- public, one item each; batched underneath -----------------------------------------
    def recorded_event(self, order_id: str, state: str) -> asyncio.Future[Doc | None]:
        """The event document of (order, state) if one was written, else None."""
        if not tracing.enabled():
            return self._lookups.submit((event_id(order_id, state), None))
        span = tracing.tracer().start_span(
            "ledger lookup",
            attributes={"db.system.name": "elasticsearch", "db.namespace": self.events_index},
        )
        future = self._lookups.submit((event_id(order_id, state), span))
        future.add_done_callback(partial(_end_item_span, span))
        return future

    def write_event(self, doc: Doc) -> asyncio.Future[None]:
        return self._submit_write(True, doc)

    def write_order(self, doc: Doc) -> asyncio.Future[None]:
        return self._submit_write(False, doc)

    def hurry(self) -> None:
        self._events.hurry()
        self._orders.hurry()

    def hurry_ledger(self) -> None:
        self._events.hurry()

    def hurry_lookups(self) -> None:
        self._lookups.hurry()

    def _submit_write(self, is_event: bool, doc: Doc) -> asyncio.Future[None]:
        batcher = self._events if is_event else self._orders
        if not tracing.enabled():
            return batcher.submit(_Write(doc))  # type: ignore[return-value]
        # The step's own span for its document, from submit to the bulk's answer (a child of
        # the step); the shared bulk request has a span of its own, linked (`_batch_span`).
        trace_id = tracing.current_trace_id()
        if trace_id is not None:
            doc["trace_id"] = trace_id
        span = tracing.tracer().start_span(
            "index event" if is_event else "index order",
            attributes={
                "db.system.name": "elasticsearch",
                "db.namespace": self.events_index if is_event else self.orders_index,
            },
        )
        future = batcher.submit(_Write(doc, span))
        future.add_done_callback(partial(_end_item_span, span))
        return future  # type: ignore[return-value]

    async def drain(self) -> None:
        for batcher in (self._lookups, self._events, self._orders):
            await batcher.drain()

    async def close(self) -> None:
        await self.drain()
        await self.client.close()

    # -- batches ---------------------------------------------------------------------------
    async def _lookup_events(self, lookups: list[_Lookup]) -> list[Doc | None]:
        ids = [event for event, _ in lookups]
        spans = [span for _, span in lookups if span is not None]
        if not spans:
            return await self._mget(ids)
        with _batch_span("ledger mget", spans, len(ids)):
            return await self._mget(ids)

    async def _mget(self, ids: list[str]) -> list[Doc | None]:
        unique = list(dict.fromkeys(ids))
        response = await with_retries(
            "mget", lambda: self.client.mget(index=self.events_index, ids=unique)
        )
        found = {d["_id"]: d["_source"] for d in response["docs"] if d.get("found")}
        return [found.get(i) for i in ids]

    async def _bulk(self, body: bytes) -> list[Doc] | None:
        """The items' results, or None when every item succeeded."""
        response = await with_retries(
            "bulk",
            # Pre-encoded NDJSON: the client sends bytes as they are (typed for dicts only).
            lambda: self.client.bulk(body=cast(Any, body), refresh=False, filter_path=_BULK_FILTER),
        )
        if not response.get("errors"):
            return None
        return [next(iter(item.values())) for item in response["items"]]

    async def _bulk_until_settled(self, entries: list[_Entry]) -> list[PermanentIndexError | None]:
        """Bulk-write `entries`; retry the items ES could not take now; the outcome of each.

        409 counts as done: the document already exists (an event written by an earlier
        attempt) or is already newer (a current-state document of a later state).
        A refused document fails only its own step, not the others that shared its request.
        """
        outcomes: list[PermanentIndexError | None] = [None] * len(entries)
        pending = list(range(len(entries)))

        async def attempt() -> None:
            nonlocal pending
            results = await self._bulk(b"".join(entries[i].lines for i in pending))
            if results is None:
                return
            retry, busy = [], set()
            for position, result in zip(pending, results, strict=True):
                status = result.get("status", 500)
                if status in _RETRYABLE_STATUS:
                    retry.append(position)
                    busy.add(status)
                elif status not in (200, 201, 409):
                    error = f"{entries[position].label}: {result.get('error')}"
                    outcomes[position] = PermanentIndexError(error)
            if retry:
                statuses = ", ".join(map(str, sorted(busy)))
                pending = retry
                raise _Busy(f"{len(retry)} of {len(results)} items answered HTTP {statuses}")

        await retry_async(
            "elasticsearch bulk", attempt, retry_on=(_Busy,), backoff=_BACKOFF, logger=log
        )
        return outcomes

    def _event_entry(self, doc: Doc) -> _Entry:
        action = {
            "create": {"_index": self.events_index, "_id": event_id(doc["order_id"], doc["state"])}
        }
        return _Entry(
            f"event {doc['order_id']}", b"%b\n%b\n" % (orjson.dumps(action), orjson.dumps(doc))
        )

    def _order_entry(self, doc: Doc) -> _Entry:
        action = _order_action(self.orders_index, doc)
        return _Entry(
            f"order {doc['order_id']}", b"%b\n%b\n" % (orjson.dumps(action), orjson.dumps(doc))
        )

    async def _write_events(self, writes: list[_Write]) -> list[PermanentIndexError | None]:
        return await self._bulk_until_settled([self._event_entry(w.doc) for w in writes])

    async def _write_orders(self, writes: list[_Write]) -> list[PermanentIndexError | None]:
        # An order's current-state documents in one batch become one: only the latest state
        # is written (with every state's timestamp), so the batch writes each order once.
        coalesced: dict[str, Doc] = {}
        for write in writes:
            order_id = write.doc["order_id"]
            previous = coalesced.get(order_id)
            coalesced[order_id] = (
                write.doc if previous is None else _merge_order_docs(previous, write.doc)
            )
        outcomes = await self._bulk_until_settled(
            [self._order_entry(doc) for doc in coalesced.values()]
        )
        outcome_of = dict(zip(coalesced, outcomes, strict=True))
        return [outcome_of[write.doc["order_id"]] for write in writes]
