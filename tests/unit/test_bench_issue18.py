"""bench, issue #18: the median of several runs, the issue's targets and verdicts, which
process is the bottleneck, and one order's steps."""

import pytest

from bench.figures import (
    Figure,
    LatencySummary,
    Requirement,
    Status,
    median_index,
    merge,
    merge_runs,
    short,
)
from bench.issue18 import cores_at_rate, issue_figures
from bench.latency import STEPS, alone_limit, step_times
from bench.logscan import transition
from bench.options import parse_options
from bench.resources import CpuUsage, bottleneck, cpu_ms_per_unit


def run_figure(value: float | None, limit: float | None = None, key: str = "f") -> Figure:
    figure = Figure(key, "1", "label", "ms", value, limit=limit)
    figure.requirements = [Requirement("ms", value, 10.0, at_least=False)]
    return figure


def test_median_index_is_the_middle_of_the_sorted_values() -> None:
    assert median_index([5.0, 1.0, 3.0]) == 2
    assert median_index([7.0]) == 0
    assert median_index([4.0, 1.0, 3.0, 2.0]) == 3  # even: the lower middle (2.0)
    with pytest.raises(ValueError, match="no values"):
        median_index([])


def test_merge_reports_the_median_run_and_keeps_every_run() -> None:
    merged = merge([run_figure(12.0), run_figure(8.0), run_figure(30.0)])
    assert merged.value == 12.0
    assert merged.met is False
    assert [r["value"] for r in merged.details["runs"]] == [12.0, 8.0, 30.0]
    assert merged.details["value_range"] == [8.0, 30.0]
    assert merged.details["median_of"] == 3


def test_with_a_limit_the_median_is_taken_over_the_ratio() -> None:
    # Values 10, 20, 30 against limits 100, 10, 60: ratios 0.1, 2.0, 0.5 → the third run.
    runs = [run_figure(10.0, 100.0), run_figure(20.0, 10.0), run_figure(30.0, 60.0)]
    assert merge(runs).value == 30.0


def test_a_run_that_failed_its_checks_fails_the_figure() -> None:
    broken = run_figure(9.0)
    broken.refuse(["3 of 5 orders are Finalizado"])
    merged = merge([run_figure(1.0), broken, run_figure(2.0)])
    assert merged.status is Status.FAILED
    assert "FAILED in 1 of 3 runs" in merged.notes


def test_one_run_is_reported_as_it_is() -> None:
    merged = merge_runs([[run_figure(3.0, key="a"), run_figure(4.0, key="b")]])
    assert [f.value for f in merged] == [3.0, 4.0]
    assert "runs" not in merged[0].details


def test_runs_default_to_three_and_to_one_for_quick_and_long() -> None:
    assert parse_options([]).runs == 3
    assert parse_options(["--quick"]).runs == 1
    assert parse_options(["--long"]).runs == 1
    assert parse_options(["--quick", "--runs", "2"]).runs == 2


def usage(busiest: dict[str, float], busy: float = 0.5) -> CpuUsage:
    return CpuUsage(cores=busiest, machine_busy=busy, logical_cpus=2, wall_s=10.0, busiest=busiest)


def test_the_bottleneck_is_the_process_closest_to_a_full_core() -> None:
    name, cores, verdict = bottleneck(usage({"producer": 0.3, "consumer": 0.95, "bench": 1.0}))
    assert (name, cores) == ("consumer", 0.95)
    assert verdict.startswith("consumer saturated")
    name, _, verdict = bottleneck(usage({"producer": 0.6, "kafka": 0.7}, busy=0.95))
    assert name == "kafka"
    assert verdict.startswith("machine saturated")
    assert "latency-bound" in bottleneck(usage({"consumer": 0.4}))[2]
    assert bottleneck(usage({"bench": 0.4}))[0] == "?"


def test_cpu_per_unit_counts_the_whole_window() -> None:
    assert cpu_ms_per_unit(usage({"consumer": 0.5}), "consumer", 1000) == pytest.approx(5.0)
    assert cpu_ms_per_unit(usage({"consumer": 0.5}), "producer", 1000) is None
    assert cpu_ms_per_unit(usage({"consumer": 0.5}), "consumer", 0) is None


def grpc(key: str, rate: float, producer_cores: float, p50_ms: float = 1.0) -> Figure:
    figure = Figure(key, "2", key, "orders/s", rate)
    figure.details = {"cpu": {"cores": {"producer": producer_cores}}}
    figure.latency = LatencySummary(100, p50_ms, 2 * p50_ms, 3 * p50_ms)
    return figure


def e2e(key: str, rate: float, consumer_ms: float) -> Figure:
    figure = Figure(key, "6", key, "orders/s", rate)
    verdict = {"process": "consumer", "cores": 0.97, "verdict": "consumer saturated: 0.97"}
    figure.details = {"consumer_cpu_ms_per_order": consumer_ms, "bottleneck": verdict}
    return figure


def derived(**changes: Figure) -> dict[str, Figure]:
    ack = Figure("latency.broker_ack", "5c", "ack", "ms")
    ack.set_latency([0.002] * 5)
    figures = [
        grpc("grpc_limit.c16", 4000, 0.92),  # 0.23 ms per call
        grpc("ingest.c16", 1000, 0.46),  # 0.46 ms per order: 2.0 × no-op, at the bound
        grpc("grpc_limit.c1", 1600, 0.3, p50_ms=0.8),
        grpc("ingest.c1", 250, 0.3, p50_ms=3.2),  # bound 0.8 + 2.0 + 0.5 = 3.3
        grpc("bulk", 10_000, 0.9),  # 0.09 ms per order
        e2e("e2e.discard", 210.0, 1.9),
        e2e("e2e.discard.workers2", 190.0, 2.2),  # 1.16 × one worker
        ack,
    ]
    by_key = {f.key: f for f in figures} | changes
    return {f.key: f for f in issue_figures(by_key)}


def test_each_issue_figure_is_judged_against_its_target() -> None:
    found = derived()
    assert found["issue18.producer_cpu"].value == pytest.approx(0.46)
    assert found["issue18.producer_cpu"].ratio == pytest.approx(2.0)
    assert found["issue18.producer_cpu"].met is True
    assert found["issue18.bulk_cpu"].value == pytest.approx(0.09)
    assert found["issue18.bulk_cpu"].met is False
    assert found["issue18.consumer_cpu.discard"].met is True
    assert found["issue18.consumer_cpu.discard"].ratio == pytest.approx(0.95)
    assert found["issue18.consumer_cpu.discard.workers2"].met is False  # 2.2 > 2.0 ms
    assert found["issue18.consumer_cpu.workers2_vs_1"].ratio == pytest.approx(2.2 / 1.9)
    assert found["issue18.consumer_cpu.workers2_vs_1"].met is False  # > 1.1 × one worker
    assert found["issue18.e2e"].met is True
    assert found["issue18.e2e"].details["bottleneck"]["process"] == "consumer"
    assert found["issue18.create_c1"].limit == pytest.approx(3.3)
    assert found["issue18.create_c1"].met is True


def metered_e2e(orders: int, wall_s: float, cores: dict[str, float]) -> Figure:
    # The rate counts from the first order sent to the last Finalizado: a shorter window than
    # the CPU's, which also holds the start and the settling.
    figure = e2e("e2e.discard", 1.25 * orders / wall_s, 2.0)
    cpu = {"cores": cores, "unattributed": 0.1, "logical_cpus": 2, "wall_s": wall_s}
    figure.details |= {"orders": orders, "cpu": cpu}
    return figure


def test_the_end_to_end_run_is_scaled_to_the_target_rate_to_see_if_the_machine_can_hold_it() -> (
    None
):
    # 1,000 orders metered over 10 s: 1 ms of CPU per order for each 0.1 core.
    slow = metered_e2e(1000, 10.0, {"consumer": 0.3, "smtp-discard": 0.45, "bench": 0.5})
    budget = cores_at_rate(slow, 200.0)
    assert budget is not None
    assert budget.cores == pytest.approx(
        {"smtp-discard": 0.9, "consumer": 0.6, "unattributed": 0.2}
    )
    assert budget.total == pytest.approx(1.7)
    assert "1.70 cores of 2 (85%" in budget.describe()
    assert "within this machine" in budget.describe()
    heavy = metered_e2e(1000, 10.0, {"consumer": 0.4, "smtp-discard": 0.5})
    assert (
        "more than this machine can give"
        in derived(**{"e2e.discard": heavy})["issue18.e2e"].notes[-1]
    )
    assert cores_at_rate(e2e("e2e.discard", 100.0, 2.0), 200.0) is None  # not metered


def test_a_missing_or_failed_source_leaves_the_verdict_open() -> None:
    failed = grpc("ingest.c16", 1000, 0.46)
    failed.refuse(["2 calls failed"])
    found = derived(**{"ingest.c16": failed})
    assert found["issue18.producer_cpu"].met is None
    assert any("not judged" in note for note in found["issue18.producer_cpu"].notes)
    assert found["issue18.bulk_cpu"].met is False  # the others are still judged
    noop = grpc("grpc_limit.c16", 4000, 0.92)
    noop.refuse(["1 call failed"])
    found = derived(**{"grpc_limit.c16": noop})  # the value is known, its reference is not
    assert found["issue18.producer_cpu"].met is None
    assert any("not judged" in note for note in found["issue18.producer_cpu"].notes)


def test_one_order_alone_is_split_into_steps_and_judged_against_five_operations() -> None:
    slugs = ["procesando", "preparacion", "enviado", "entregado", "finalizado"]
    entered = {slug: 10.0 + n for n, slug in enumerate(slugs, start=1)}
    # The states' own lines need not come in order: only the last one's time counts.
    steps = step_times(sent=9.0, acked=10.0, entered=entered, finished=15.5)
    assert steps == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]
    assert STEPS[1:3] == ("to Procesando", "Procesando")
    assert alone_limit({"smtp": 1.0, "es": 2.0, "kafka": 3.0}) == 30.0
    assert alone_limit({"smtp": 1.0, "es": None}) is None


def test_a_consumer_transition_line_gives_order_state_and_time() -> None:
    line = (
        b'{"ts":"2026-12-01 16:21:54,123","level":"INFO","message":"order state reached",'
        b'"order_id":"abc","state":"Enviado","email":"sent"}'
    )
    found = transition(line)
    assert found is not None
    assert found[:2] == ("abc", "Enviado")
    assert found[2] % 1 == pytest.approx(0.123, abs=1e-6)
    assert transition(b'{"ts":"2026-12-01 16:21:54,123","message":"other"}') is None


def test_small_numbers_keep_their_digits() -> None:
    assert short(0.08) == "0.080"
    assert short(0.183) == "0.18"
    assert short(4.47) == "4.47"
    assert short(96.24) == "96.2"
    assert short(1304.2) == "1,304"
    assert Requirement("ms", 0.1, 0.08, at_least=False).describe() == "ms ≤ 0.080"
