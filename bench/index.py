"""Scenario 5b (beyond the brief's list, to explain the end-to-end figure): the index limit —
the consumer's own Elasticsearch writes (OrderSearchIndex: lookup, event insert, order upsert
per state) for N orders walked state by state, without Kafka or SMTP."""

from __future__ import annotations

import asyncio
import time

from bench.checks import PipelineCounts, pipeline_problems
from bench.figures import Figure
from bench.probe import PipelineProbe
from devkit.orders import accepted_orders
from pedidos.adapters.elasticsearch import search_index
from pedidos.domain.order import utc_now
from pedidos.domain.states import ALL_STATES
from pedidos.wire.search_documents import event_document, order_document


async def _walk(es_url: str, events_index: str, orders_index: str, count: int) -> float:
    index = search_index.OrderSearchIndex(search_index.connect(es_url), events_index, orders_index)
    orders = accepted_orders(seed=55, count=count)
    started = time.perf_counter()
    try:
        for state in ALL_STATES:
            await asyncio.gather(*(index.recorded_event(o.order_id, state.value) for o in orders))
            for order in orders:
                order.enter(state, utc_now())
            await asyncio.gather(
                *(
                    index.write_event(
                        event_document(
                            o,
                            state,
                            email_status="sent",
                            email_message_id=f"<{o.order_id}.{state.slug}@bench>",
                            email_error=None,
                            correlation_id=o.order_id,
                        )
                    )
                    for o in orders
                )
            )
            await asyncio.gather(*(index.write_order(order_document(o)) for o in orders))
        return time.perf_counter() - started
    finally:
        await index.close()


def index_figure(
    probe: PipelineProbe,
    es_url: str,
    events: str,
    orders_index: str,
    count: int,
    timeout_s: float,
) -> Figure:
    # The adapter retries a struggling ES forever; the bench does not wait forever.
    elapsed = asyncio.run(asyncio.wait_for(_walk(es_url, events, orders_index, count), timeout_s))
    figure = Figure(
        key="index_limit",
        scenario="5b Index limit",
        label=f"consumer's ES writes, {count:,} orders × 5 states",
        unit="orders/s",
        value=count / elapsed,
        notes=["not in the brief's list: the end to end run's other shared dependency"],
        details={"orders": count, "elapsed_s": round(elapsed, 3)},
    )
    counts: PipelineCounts = probe.counts()
    figure.details["counts"] = {
        "orders_total": counts.orders_total,
        "orders_finalizado": counts.orders_finalizado,
        "events_by_state": dict(counts.events_by_state),
    }
    figure.refuse(pipeline_problems(count, counts))
    return figure
