"""bench: percentiles and latency summaries."""

import pytest

from bench.figures import LatencySummary, percentile
from bench.latency import trimmed_mean


def test_percentile_interpolates_between_closest_ranks_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(values, 99) == pytest.approx(3.97)


def test_percentile_ignores_input_order_and_handles_one_value() -> None:
    assert percentile([9.0, 1.0, 5.0], 50) == 5.0
    assert percentile([7.0], 99) == 7.0


def test_p99_of_a_hundred_values_is_pulled_by_the_slowest() -> None:
    values = [1.0] * 99 + [101.0]
    assert percentile(values, 50) == 1.0
    assert percentile(values, 99) == pytest.approx(2.0)


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], q)


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_latency_summary_is_in_milliseconds() -> None:
    summary = LatencySummary.of_seconds([0.001, 0.002, 0.003])
    assert summary is not None
    assert summary.count == 3
    assert summary.p50_ms == pytest.approx(2.0)
    assert summary.p99_ms == pytest.approx(2.98)
    assert summary.max_ms == pytest.approx(3.0)
    assert LatencySummary.of_seconds([]) is None


def test_the_trimmed_mean_resolves_whole_milliseconds_a_median_cannot() -> None:
    """An order alone's steps are timed from documents' whole-millisecond times: a step of
    2.6 ms reads as 2 or 3 ms (here 40 % and 60 % of the time), whose median says 3."""
    steps = [0.002] * 40 + [0.003] * 60
    assert percentile(steps, 50) == 0.003
    assert trimmed_mean(steps) == pytest.approx(0.0026, abs=0.00002)


def test_the_trimmed_mean_leaves_out_the_slowest_and_fastest_twentieth() -> None:
    steps = [0.0] + [0.002] * 18 + [0.5]
    assert trimmed_mean(steps) == pytest.approx(0.002)
