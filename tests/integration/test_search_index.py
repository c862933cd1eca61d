"""The Elasticsearch adapter against the embedded server: idempotent, monotonic, batched."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from devkit.indices import search_docs
from devkit.orders import make_details
from pedidos.adapters.elasticsearch.search_index import OrderSearchIndex, connect
from pedidos.domain.order import Order
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.wire.search_documents import event_document, order_document

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def walked(order_id: str, upto: OrderState) -> Order:
    order = Order(order_id, make_details(), T0)
    for step, state in enumerate(ALL_STATES[: upto.position + 1]):
        order.enter(state, T0 + timedelta(seconds=step))
    return order


def event(order: Order) -> dict:
    assert order.state is not None
    return event_document(
        order,
        order.state,
        email_status="sent",
        email_message_id="<m>",
        email_error=None,
        correlation_id="c",
    )


def test_events_are_written_once_and_found_by_the_ledger_lookup(
    pipeline_env: dict[str, str],
) -> None:
    env = pipeline_env
    order_ids = [str(uuid.uuid4()) for _ in range(50)]

    async def scenario() -> list[dict | None]:
        index = OrderSearchIndex(
            connect(env["ELASTICSEARCH_URL"]),
            env["ELASTICSEARCH_EVENTS_INDEX"],
            env["ELASTICSEARCH_ORDERS_INDEX"],
        )
        try:
            docs = [event(walked(o, OrderState.PROCESANDO)) for o in order_ids]
            await asyncio.gather(*(index.write_event(d) for d in docs))
            await asyncio.gather(*(index.write_event(d) for d in docs))  # a redelivery
            return list(
                await asyncio.gather(
                    *(
                        index.recorded_event(o, s.value)
                        for o in order_ids[:3]
                        for s in ALL_STATES[:2]
                    )
                )
            )
        finally:
            await index.close()

    found = asyncio.run(scenario())
    assert [d is not None for d in found] == [True, False] * 3
    assert found[0] is not None
    assert found[0]["email_status"] == "sent"
    assert (
        len(search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_EVENTS_INDEX"], order_ids))
        == 50
    )


def test_the_current_document_never_moves_backwards(pipeline_env: dict[str, str]) -> None:
    env = pipeline_env
    order_id, other = str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario() -> None:
        index = OrderSearchIndex(
            connect(env["ELASTICSEARCH_URL"]),
            env["ELASTICSEARCH_EVENTS_INDEX"],
            env["ELASTICSEARCH_ORDERS_INDEX"],
        )
        try:
            await index.write_order(order_document(walked(order_id, OrderState.FINALIZADO)))
            # A duplicate step for an earlier state, arriving late (crash, rebalance, replay).
            await index.write_order(order_document(walked(order_id, OrderState.PREPARACION)))
            # Several states of one order in one batch are coalesced to the latest.
            await asyncio.gather(
                *(index.write_order(order_document(walked(other, s))) for s in reversed(ALL_STATES))
            )
        finally:
            await index.close()

    asyncio.run(scenario())
    docs = search_docs(
        env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_ORDERS_INDEX"], [order_id, other]
    )
    by_id = {d["_id"]: d for d in docs}
    assert len(docs) == len(by_id) == 2, "one current document per order"
    # Both end as the document of their whole walk: the late write of `order_id` was refused,
    # and the five writes of `other` (newest first) merged into the latest.
    for oid in (order_id, other):
        stored = {k: v for k, v in by_id[oid].items() if k != "_id"}
        assert stored == order_document(walked(oid, OrderState.FINALIZADO))
