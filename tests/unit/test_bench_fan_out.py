"""bench: one load spec per client process, sharing the concurrency or the orders."""

from __future__ import annotations

from bench.load import LoadSpec
from bench.workers import fan_out


def spec(concurrency: int, count: int | None = None) -> LoadSpec:
    return LoadSpec("create", "127.0.0.1:1", concurrency, start_at=0.0, count=count, key_prefix="k")


def test_a_timed_level_shares_its_callers_with_a_seed_and_key_prefix_each() -> None:
    specs = fan_out(spec(5), processes=2, seed=0)
    assert [(s.concurrency, s.count, s.seed, s.key_prefix) for s in specs] == [
        (3, None, 0, "k-0"),
        (2, None, 1, "k-1"),
    ]
    assert [s.concurrency for s in fan_out(spec(1), processes=2, seed=0)] == [1]


def test_counted_orders_are_shared_too_and_each_one_is_sent_once() -> None:
    specs = fan_out(spec(64, count=1001), processes=2, seed=100)
    assert [(s.concurrency, s.count, s.seed) for s in specs] == [(32, 501, 100), (32, 500, 101)]


def test_bulk_calls_in_flight_are_per_process_while_the_orders_are_shared() -> None:
    specs = fan_out(spec(4, count=5_000), processes=3, seed=200, fixed_concurrency=True)
    assert [(s.concurrency, s.count, s.seed) for s in specs] == [
        (4, 1667, 200),
        (4, 1667, 201),
        (4, 1666, 202),
    ]
