"""bench: ratios, targets and the verdict of a figure; which side saturated; memory growth."""

import pytest

from bench.figures import (
    Figure,
    LatencySummary,
    Requirement,
    Status,
    at_least_times,
    at_most_times,
    ratio,
)
from bench.resources import CpuUsage, RssSample, growth, rss_at, rss_profile, saturation
from bench.workers import split


def ingest(value: float | None, limit: float | None) -> Figure:
    return Figure("ingest.c16", "2 Ingest", "CreateOrder c=16", "orders/s", value, limit=limit)


def test_ratio_needs_both_sides_and_a_positive_limit() -> None:
    assert ratio(800, 1000) == 0.8
    assert ratio(None, 1000) is None
    assert ratio(800, None) is None
    assert ratio(800, 0) is None


def test_a_figure_meets_its_target_only_if_every_requirement_is_met() -> None:
    figure = ingest(900, 1000)
    figure.requirements = [
        at_least_times("orders/s", 900, 1000, 0.8),
        at_most_times("p99 ms", 9.0, 4.0, 2.0),
    ]
    assert figure.ratio == pytest.approx(0.9)
    assert figure.met is False
    figure.requirements[1] = at_most_times("p99 ms", 8.0, 4.0, 2.0)  # exactly at the bound
    assert figure.met is True


def test_below_the_ratio_is_not_met() -> None:
    requirement = at_least_times("orders/s", 799, 1000, 0.8)
    assert requirement.bound == pytest.approx(800)
    assert requirement.met is False
    assert requirement.describe() == "orders/s ≥ 800.0"


def test_an_unknown_limit_leaves_the_verdict_open() -> None:
    figure = ingest(900, None)
    figure.requirements = [at_least_times("orders/s", 900, None, 0.8)]
    assert figure.met is None
    assert figure.requirements[0].describe() == "orders/s ≥ ?"


def test_a_figure_without_targets_has_no_verdict() -> None:
    assert ingest(900, 1000).met is None


def test_a_refused_figure_reports_no_value_and_says_why() -> None:
    figure = ingest(900, 1000)
    figure.latency = LatencySummary(10, 1.0, 2.0, 3.0)
    figure.requirements = [Requirement("orders/s", 900, 100)]
    figure.refuse(["3 of 5,000 orders are Finalizado"])
    assert figure.status is Status.FAILED
    assert figure.value is None
    assert figure.latency is None
    assert figure.ratio is None
    assert figure.met is None
    assert figure.details["refused_value"] == 900
    assert "3 of 5,000 orders are Finalizado" in figure.notes
    exported = figure.to_json()
    assert exported["status"] == "FAILED"
    assert exported["value"] is None


def test_refusing_with_no_problems_changes_nothing() -> None:
    figure = ingest(900, 1000)
    figure.refuse([])
    assert figure.status is Status.OK
    assert figure.value == 900


def usage(cores: dict[str, float], busy: float, other: float = 0.0) -> CpuUsage:
    return CpuUsage(cores=cores, machine_busy=busy, logical_cpus=2, other=other)


def test_saturation_names_the_side_that_ran_out_of_cpu() -> None:
    assert "producer saturated" in saturation(
        usage({"client": 0.4, "producer": 0.98}, 0.75), "client", "producer", 2
    )
    assert "client saturated" in saturation(
        usage({"client": 0.95, "producer": 0.5}, 0.75), "client", "producer", 1
    )
    assert "machine saturated" in saturation(
        usage({"client": 0.9, "producer": 1.0}, 0.97), "client", "producer", 2
    )
    assert "latency-bound" in saturation(
        usage({"client": 0.1, "producer": 0.3}, 0.2), "client", "producer", 1
    )


def test_foreign_load_is_called_out_before_anything_else() -> None:
    verdict = saturation(usage({"client": 0.5, "producer": 0.9}, 0.99, other=0.6), "c", "p", 1)
    assert verdict.startswith("SHARED MACHINE")


def test_growth_over_the_second_half() -> None:
    assert growth(100, 105) == pytest.approx(0.05)
    assert growth(100, 90) == pytest.approx(-0.1)
    assert growth(None, 100) is None
    assert growth(0, 100) is None


def test_rss_profile_reads_the_sample_at_each_fraction_of_the_run() -> None:
    samples = [RssSample(float(t), {"consumer": 100 + t}) for t in range(0, 101, 10)]
    profile = rss_profile(samples, "consumer", 0.0, 100.0)
    assert profile == {"p10": 110, "p50": 150, "p100": 200, "peak": 200}
    assert rss_at(samples, "consumer", -5.0) == 100  # before the first: the first
    assert rss_at(samples, "producer", 50.0) is None


def test_concurrency_is_split_over_processes_without_empty_shares() -> None:
    assert split(64, 2) == [32, 32]
    assert split(5, 2) == [3, 2]
    assert split(1, 2) == [1]
    assert sum(split(5_000, 3)) == 5_000
