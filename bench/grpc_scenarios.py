"""Scenarios 1-3: the no-op RPC limit, CreateOrder ingest beside it, and bulk ingest with
CreateOrderBatch (many orders per message)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc

from bench.checks import rpc_problems
from bench.figures import Figure, LatencySummary, Requirement, at_least_times, at_most_times
from bench.load import BULK_BATCH, Kind, LoadSpec, order_requests
from bench.options import SCENARIO_TIMEOUT_S, Timing
from bench.resources import CpuUsage, cpu_ms_per_item, saturation
from bench.workers import LoadWorkers, fan_out
from devkit.credentials import producer_channel
from pedidos.v1 import orders_pb2_grpc

TARGETED_CONCURRENCY = 16  # from here on ingest must keep up with the no-op RPC
# Let the parent's CPU snapshot land before the window opens.
START_DELAY_S = 0.5
# Batch calls in flight per client process: one is being answered while the next is read.
BULK_CALLS_IN_FLIGHT = 4
BULK_TARGET = 20_000.0
WARM_UP_S = 60.0


@dataclass(frozen=True, slots=True)
class Target:
    """The producer under load, the client processes that load it, and whose CPU is metered."""

    workers: LoadWorkers
    address: str
    watched: dict[str, list[int]]  # the producer's and the stack's pids, by name
    timing: Timing


def _load_notes(cpu: CpuUsage, client_processes: int, detail: str) -> list[str]:
    return [
        cpu.describe(),
        saturation(cpu, "client", "producer", client_processes),
        f"{client_processes} client process(es){detail}",
    ]


def _measure_level(
    figure: Figure, target: Target, kind: Kind, concurrency: int, key_prefix: str
) -> tuple[float, LatencySummary | None]:
    """One kind of call at one concurrency over the timed window, into `figure`; its rate and
    latency (which stay known when the figure is refused)."""
    timing = target.timing
    template = LoadSpec(
        kind=kind,
        address=target.address,
        concurrency=concurrency,
        start_at=time.time() + START_DELAY_S,
        warmup_s=timing.warmup_s,
        duration_s=timing.duration_s,
        key_prefix=key_prefix,
    )
    specs = fan_out(template, target.workers.size, seed=0)
    result, cpu = target.workers.measure(
        specs, target.watched, timing.warmup_s + timing.duration_s + 30, window_s=timing.duration_s
    )
    rate = result.completed / timing.duration_s
    per_call = cpu_ms_per_item(cpu, "producer", rate)
    latency = LatencySummary.of_seconds(result.latencies_s)
    figure.value = rate
    figure.latency = latency
    detail = "" if per_call is None else f"; producer CPU {per_call:.2f} ms per call"
    figure.notes += _load_notes(cpu, len(specs), detail)
    figure.details = {
        "concurrency": concurrency,
        "client_processes": len(specs),
        "completed": result.completed,
        "errors": dict(result.errors),
        "cpu": cpu.to_json(),
    }
    figure.foreign_cores = cpu.other
    figure.refuse(rpc_problems(result.completed, result.errors))
    return rate, latency


def warm_up(address: str, key_prefix: str) -> None:
    """One CreateOrder, untimed, until it is acknowledged: a fresh broker can keep the
    producer's first publish waiting for its idempotent producer id for seconds, longer than a
    --quick window."""
    request = order_requests(seed=0, key_prefix=key_prefix)(0)
    deadline = time.monotonic() + WARM_UP_S
    with producer_channel(address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        while True:
            try:
                stub.CreateOrder(request, timeout=max(deadline - time.monotonic(), 1.0))
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def measure_noop(figure: Figure, target: Target, concurrency: int) -> None:
    """Scenario 1: Health.Check, the RPC that does nothing."""
    _measure_level(figure, target, "health", concurrency, "noop")


def measure_ingest(
    figure: Figure, target: Target, concurrency: int, key_prefix: str, noop: Figure
) -> None:
    """Scenario 2: CreateOrder, beside the no-op RPC at the same concurrency."""
    rate, latency = _measure_level(figure, target, "create", concurrency, key_prefix)
    figure.limit = noop.value
    figure.limit_label = f"no-op RPC/s c={concurrency}"
    if concurrency >= TARGETED_CONCURRENCY:
        p99 = latency.p99_ms if latency else None
        noop_p99 = noop.latency.p99_ms if noop.latency else None
        figure.requirements = [
            at_least_times("orders/s", rate, noop.value, 0.8),
            at_most_times("p99 ms", p99, noop_p99, 2.0),
        ]


def measure_bulk(figure: Figure, target: Target, orders: int, key_prefix: str) -> None:
    """Scenario 3: each client process sends its share of the orders, BULK_CALLS_IN_FLIGHT
    CreateOrderBatch calls at a time."""
    template = LoadSpec(
        kind="bulk",
        address=target.address,
        concurrency=BULK_CALLS_IN_FLIGHT,
        start_at=time.time() + START_DELAY_S,
        count=orders,
        key_prefix=key_prefix,
        deadline_s=SCENARIO_TIMEOUT_S,
    )
    specs = fan_out(template, target.workers.size, seed=200, fixed_concurrency=True)
    result, cpu = target.workers.measure(specs, target.watched, SCENARIO_TIMEOUT_S + 30)
    elapsed = (result.last_done_at or time.time()) - template.start_at
    figure.value = result.completed / elapsed
    figure.foreign_cores = cpu.other
    figure.requirements = [Requirement("orders/s", figure.value, BULK_TARGET)]
    per_order = cpu_ms_per_item(cpu, "producer", figure.value) or 0
    in_flight = f"{BULK_CALLS_IN_FLIGHT} calls of {BULK_BATCH} orders in flight each"
    detail = f", {in_flight}; producer CPU {per_order:.2f} ms per order"
    figure.notes += _load_notes(cpu, len(specs), detail)
    distinct = len(set(result.order_ids))
    figure.details = {
        "orders": orders,
        "accepted": result.completed,
        "distinct_order_ids": distinct,
        "errors": dict(result.errors),
        "elapsed_s": round(elapsed, 3),
        "cpu": cpu.to_json(),
    }
    problems = rpc_problems(result.completed, result.errors)
    if result.completed != orders or distinct != orders:
        problems.append(f"{result.completed} of {orders} orders accepted, {distinct} distinct ids")
    figure.refuse(problems)
