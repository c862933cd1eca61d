"""OrderSearchIndex against a fake client: the current-state document never moves back (the
domain's rank is its version, a batch keeps the later state), the ledger's events go in
requests of their own, and bulk items Elasticsearch could not take now are retried while refused
ones fail alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from devkit.orders import make_details
from pedidos.adapters.elasticsearch import search_index
from pedidos.adapters.elasticsearch.search_index import OrderSearchIndex, PermanentIndexError
from pedidos.domain.order import Order
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.runtime.retry import Backoff
from pedidos.wire.search_documents import order_document

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def document(order_id: str, upto: OrderState) -> dict[str, Any]:
    order = Order(order_id, make_details(), T0)
    for step, state in enumerate(ALL_STATES[: upto.position + 1]):
        order.enter(state, T0 + timedelta(seconds=step))
    return order_document(order)


class FakeBulkClient:
    """Answers each bulk item with the next status queued for its document id (201 when none)."""

    def __init__(self, statuses: dict[str, list[int]] | None = None) -> None:
        self.statuses = statuses or {}
        self.requests: list[list[dict[str, Any]]] = []

    async def bulk(self, body: bytes, refresh: bool, filter_path: str) -> dict[str, Any]:
        operations = [orjson.loads(line) for line in body.splitlines()]
        self.requests.append(operations)
        items, statuses = [], []
        for action in operations[::2]:
            kind, meta = next(iter(action.items()))
            queued = self.statuses.get(meta["_id"]) or [201]
            status = queued.pop(0)
            items.append({kind: {"status": status, "error": "nope" if status >= 400 else None}})
            statuses.append(status)
        errors = any(status >= 400 for status in statuses)
        return {"errors": errors, "items": items}

    async def close(self) -> None:
        pass


async def _write(client: FakeBulkClient, docs: list[dict[str, Any]], kind: str) -> list[Any]:
    index = OrderSearchIndex(client, "events", "orders")  # type: ignore[arg-type]
    write = index.write_order if kind == "order" else index.write_event
    outcomes = await asyncio.gather(*(write(doc) for doc in docs), return_exceptions=True)
    await index.close()
    return outcomes


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_index, "_BACKOFF", Backoff(initial_s=0.001, max_s=0.002))


def test_the_version_of_an_order_document_is_its_states_rank() -> None:
    client = FakeBulkClient()
    asyncio.run(_write(client, [document("o-1", OrderState.ENVIADO)], "order"))
    [[action, _]] = client.requests
    assert action["index"]["version"] == OrderState.ENVIADO.rank
    assert action["index"]["version_type"] == "external_gte"


@pytest.mark.parametrize("late_first", [False, True], ids=["in-order", "late-write-last"])
def test_one_batch_keeps_the_later_state_and_every_timestamp(late_first: bool) -> None:
    earlier = document("o-1", OrderState.PREPARACION)
    later_doc = document("o-1", OrderState.ENTREGADO)
    client = FakeBulkClient()
    batch = [later_doc, earlier] if late_first else [earlier, later_doc]
    asyncio.run(_write(client, batch, "order"))
    [[action, written]] = client.requests  # coalesced: one document for the order
    assert written["state"] == OrderState.ENTREGADO.value
    assert written["state_index"] == OrderState.ENTREGADO.position
    assert written["@timestamp"] == later_doc["@timestamp"]
    assert set(written["reached_at"]) == {s.slug for s in ALL_STATES[:4]}
    assert action["index"]["version"] == OrderState.ENTREGADO.rank


def test_busy_items_are_retried_and_a_refused_one_fails_alone() -> None:
    docs = [document(f"o-{n}", OrderState.PROCESANDO) for n in range(3)]
    ids = [search_index.event_id(d["order_id"], d["state"]) for d in docs]
    client = FakeBulkClient({ids[0]: [503, 429, 201], ids[1]: [400]})
    outcomes = asyncio.run(_write(client, docs, "event"))
    assert outcomes[0] is None
    assert isinstance(outcomes[1], PermanentIndexError)
    assert outcomes[2] is None
    assert [len(request) // 2 for request in client.requests] == [3, 1, 1]


def test_events_and_current_states_go_in_requests_of_their_own_with_their_own_outcome() -> None:
    order = document("o-1", OrderState.PROCESANDO)
    event = {**order, "email_status": "sent"}
    client = FakeBulkClient({"o-1": [400]})

    async def scenario() -> list[Any]:
        index = OrderSearchIndex(client, "events", "orders")  # type: ignore[arg-type]
        outcomes = await asyncio.gather(
            index.write_event(event), index.write_order(order), return_exceptions=True
        )
        await index.close()
        return list(outcomes)

    event_outcome, order_outcome = asyncio.run(scenario())
    [[create, _], [index_action, _]] = client.requests
    assert create["create"]["_index"] == "events"
    assert index_action["index"]["_index"] == "orders"
    assert event_outcome is None
    assert isinstance(order_outcome, PermanentIndexError)


class SlowOrdersClient(FakeBulkClient):
    """Takes `delay_s` over a request that writes current states, as the stand-in does (an
    overwrite costs it several times a create)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    async def bulk(self, body: bytes, refresh: bool, filter_path: str) -> dict[str, Any]:
        if b'{"index"' in body:
            await asyncio.sleep(self.delay_s)
        return await super().bulk(body, refresh, filter_path)


def test_a_ledger_entry_is_stored_without_waiting_for_current_states_being_written() -> None:
    """A send slot is held until its ledger entry is stored: a slow request of current states
    must not hold it, nor the ledger entries submitted while that request runs."""
    client = SlowOrdersClient(delay_s=0.3)
    order_done_when_events_were: list[bool] = []

    async def scenario() -> None:
        index = OrderSearchIndex(client, "events", "orders")  # type: ignore[arg-type]
        first = document("o-1", OrderState.PROCESANDO)
        orders = [index.write_order(first), index.write_order(document("o-2", OrderState.ENVIADO))]
        await asyncio.sleep(0.01)  # the current states' request is under way
        events = [index.write_event({**first, "email_status": "sent"})]
        index.hurry_ledger()
        await asyncio.wait_for(asyncio.gather(*events), timeout=0.2)
        order_done_when_events_were.append(all(o.done() for o in orders))
        await asyncio.gather(*orders)
        await index.close()

    asyncio.run(scenario())
    assert order_done_when_events_were == [False]
    assert [len(request) // 2 for request in client.requests] == [1, 2]  # the event's came first


def test_an_earlier_state_written_after_a_later_one_is_sent_with_its_lower_version() -> None:
    """Across requests nothing is merged: the version makes ES refuse the earlier state (409),
    which counts as done, so the current document never moves back."""
    client = FakeBulkClient({"o-1": [201, 409]})

    async def scenario() -> None:
        index = OrderSearchIndex(client, "events", "orders")  # type: ignore[arg-type]
        await index.write_order(document("o-1", OrderState.ENVIADO))
        await index.write_order(document("o-1", OrderState.PROCESANDO))  # no error: 409 is done
        await index.close()

    asyncio.run(scenario())
    versions = [request[0]["index"]["version"] for request in client.requests]
    assert versions == [OrderState.ENVIADO.rank, OrderState.PROCESANDO.rank]


def test_a_busy_current_state_is_retried_with_the_same_version() -> None:
    client = FakeBulkClient({"o-1": [429, 503, 201]})
    outcomes = asyncio.run(_write(client, [document("o-1", OrderState.ENTREGADO)], "order"))
    assert outcomes == [None]
    assert len(client.requests) == 3
    assert {r[0]["index"]["version"] for r in client.requests} == {OrderState.ENTREGADO.rank}
    assert {r[1]["state"] for r in client.requests} == {OrderState.ENTREGADO.value}


def test_an_orders_current_states_over_its_walk_are_written_once_not_once_a_step() -> None:
    """Steps 40 ms apart, as under load: each step's event goes in a request of its own (a send
    slot waits for it), while the current states wait out their stream's longer interval and
    reach Elasticsearch as one document, the latest state, after the first."""
    client = FakeBulkClient()
    order_requests_before_the_last_step: list[int] = []

    async def scenario() -> None:
        index = OrderSearchIndex(client, "events", "orders")  # type: ignore[arg-type]
        writes = []
        for state in ALL_STATES:
            doc = document("o-1", state)
            writes += [index.write_event({**doc, "email_status": "sent"}), index.write_order(doc)]
            await asyncio.sleep(0.04)
        order_requests_before_the_last_step.append(
            sum(1 for request in client.requests if "index" in request[0])
        )
        await asyncio.gather(*writes)
        await index.close()

    asyncio.run(scenario())
    events = [r for r in client.requests if "create" in r[0]]
    orders = [r for r in client.requests if "index" in r[0]]
    assert len(events) == len(ALL_STATES)
    assert order_requests_before_the_last_step == [1]  # the first state went at once
    assert [[doc["state"] for doc in request[1::2]] for request in orders] == [
        [OrderState.PROCESANDO.value],
        [OrderState.FINALIZADO.value],
    ]
