"""Scenario 3: bulk ingest with CreateOrderBatch (many orders per message)."""

from __future__ import annotations

import time
from collections import Counter

from bench.checks import rpc_problems
from bench.figures import Figure, Requirement
from bench.grpc_scenarios import START_DELAY_S
from bench.load import BULK_BATCH, LoadSpec
from bench.resources import cpu_ms_per_item, saturation
from bench.workers import LoadWorkers, fan_out

# Batch calls in flight per client process: one is being answered while the next is read.
BULK_CALLS_IN_FLIGHT = 4
BULK_TARGET = 20_000.0


def bulk_figure(
    workers: LoadWorkers,
    address: str,
    orders: int,
    watched: dict[str, list[int]],
    key_prefix: str,
    timeout_s: float,
) -> Figure:
    # Each client process sends its share of the orders, BULK_CALLS_IN_FLIGHT calls at a time.
    template = LoadSpec(
        kind="bulk",
        address=address,
        concurrency=BULK_CALLS_IN_FLIGHT,
        start_at=time.time() + START_DELAY_S,
        count=orders,
        key_prefix=key_prefix,
        deadline_s=timeout_s,
    )
    specs = fan_out(template, workers.size, seed=200, fixed_concurrency=True)
    results, cpu = workers.measure(specs, watched, timeout_s + 30)
    errors: Counter[str] = Counter()
    for result in results:
        errors.update(result.errors)
    accepted = sum(r.completed for r in results)
    ends = [r.last_done_at for r in results if r.last_done_at is not None]
    elapsed = (max(ends) if ends else time.time()) - template.start_at
    value = accepted / elapsed
    distinct = len({order_id for r in results for order_id in r.order_ids})
    figure = Figure(
        key="bulk",
        scenario="3 Bulk ingest",
        label=f"CreateOrderBatch x{BULK_BATCH}",
        unit="orders/s",
        value=value,
        foreign_cores=cpu.other,
        requirements=[Requirement("orders/s", value, BULK_TARGET)],
        notes=[
            cpu.describe(),
            saturation(cpu, "client", "producer", len(specs)),
            f"{len(specs)} client process(es), {BULK_CALLS_IN_FLIGHT} calls of {BULK_BATCH} "
            f"orders in flight each; producer CPU "
            f"{cpu_ms_per_item(cpu, 'producer', value) or 0:.2f} ms per order",
        ],
        details={
            "orders": orders,
            "accepted": accepted,
            "distinct_order_ids": distinct,
            "errors": dict(errors),
            "elapsed_s": round(elapsed, 3),
            "cpu": cpu.to_json(),
        },
    )
    problems = rpc_problems(accepted, errors)
    if accepted != orders or distinct != orders:
        problems.append(f"{accepted} of {orders} orders accepted, {distinct} distinct ids")
    figure.refuse(problems)
    return figure
