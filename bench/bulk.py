"""Scenario 3: bulk ingest with CreateOrderBatch (many orders per message), if the contract
has it."""

from __future__ import annotations

import time
from collections import Counter

import grpc
from google.protobuf.descriptor import MethodDescriptor

from bench.checks import rpc_problems
from bench.figures import Figure, Requirement, Status
from bench.grpc_scenarios import START_DELAY_S
from bench.load import BULK_BATCH, LoadSpec
from bench.resources import CpuMeter, cpu_ms_per_item, saturation
from bench.workers import LoadWorkers, split
from pedidos.v1 import orders_pb2, orders_pb2_grpc

BULK_METHOD = "CreateOrderBatch"
# Batch calls in flight per client process: one is being answered while the next is read.
BULK_CALLS_IN_FLIGHT = 4
BULK_TARGET = 20_000.0


def bulk_method() -> MethodDescriptor | None:
    """The bulk RPC, if the contract has one: in the descriptor and on the generated stub."""
    service = orders_pb2.DESCRIPTOR.services_by_name["OrderService"]
    method = service.methods_by_name.get(BULK_METHOD)
    with grpc.insecure_channel("127.0.0.1:1") as channel:  # never connected
        stub_has_it = hasattr(orders_pb2_grpc.OrderServiceStub(channel), BULK_METHOD)
    return method if method is not None and stub_has_it else None


def bulk_figure(
    workers: LoadWorkers,
    address: str,
    orders: int,
    watched: dict[str, list[int]],
    key_prefix: str,
    timeout_s: float,
) -> Figure:
    figure = Figure(
        key="bulk",
        scenario="3 Bulk ingest",
        label=f"{BULK_METHOD} x{BULK_BATCH}",
        unit="orders/s",
        requirements=[Requirement("orders/s", None, BULK_TARGET)],
    )
    method = bulk_method()
    if method is None:
        figure.status = Status.NOT_IMPLEMENTED
        figure.notes.append(f"OrderService has no {BULK_METHOD} RPC in the contract yet")
        return figure
    shape_ok = (
        not method.client_streaming
        and not method.server_streaming
        and "orders" in method.input_type.fields_by_name
        and "results" in method.output_type.fields_by_name
    )
    if not shape_ok:
        figure.refuse([f"{BULK_METHOD} no longer has the shape bench/load.py expects; update it"])
        return figure
    # Each client process sends its share of the orders, BULK_CALLS_IN_FLIGHT calls at a time.
    counts = split(orders, workers.size)
    start_at = time.time() + START_DELAY_S
    specs = [
        LoadSpec(
            kind="bulk",
            address=address,
            concurrency=BULK_CALLS_IN_FLIGHT,
            start_at=start_at,
            count=count,
            seed=200 + index,
            key_prefix=f"{key_prefix}-{index}",
            deadline_s=timeout_s,
        )
        for index, count in enumerate(counts)
    ]
    meter = CpuMeter({"client": workers.pids[: len(specs)], **watched})
    workers.submit(specs)
    time.sleep(max(start_at - time.time(), 0))
    meter.start()
    results = workers.collect(timeout_s + 30)
    cpu = meter.stop()
    errors: Counter[str] = Counter()
    for result in results:
        errors.update(result.errors)
    if errors.get("UNIMPLEMENTED"):
        figure.status = Status.NOT_IMPLEMENTED
        figure.notes.append(f"the producer answers {BULK_METHOD} with UNIMPLEMENTED")
        return figure
    accepted = sum(r.completed for r in results)
    ends = [r.last_done_at for r in results if r.last_done_at is not None]
    elapsed = (max(ends) if ends else time.time()) - start_at
    figure.value = accepted / elapsed
    figure.foreign_cores = cpu.other
    figure.requirements = [Requirement("orders/s", figure.value, BULK_TARGET)]
    figure.notes = [
        cpu.describe(),
        saturation(cpu, "client", "producer", len(specs)),
        f"{len(specs)} client process(es), {BULK_CALLS_IN_FLIGHT} calls of {BULK_BATCH} orders "
        f"in flight each; producer CPU "
        f"{cpu_ms_per_item(cpu, 'producer', figure.value) or 0:.2f} ms per order",
    ]
    distinct = len({order_id for r in results for order_id in r.order_ids})
    figure.details = {
        "orders": orders,
        "accepted": accepted,
        "distinct_order_ids": distinct,
        "errors": dict(errors),
        "elapsed_s": round(elapsed, 3),
        "cpu": cpu.to_json(),
    }
    problems = rpc_problems(accepted, errors)
    if accepted != orders or distinct != orders:
        problems.append(f"{accepted} of {orders} orders accepted, {distinct} distinct ids")
    figure.refuse(problems)
    return figure
