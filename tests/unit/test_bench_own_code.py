"""5d: the consumer's own graph walks orders over in-memory adapters, and the figure says when a
run lost or repeated work."""

from __future__ import annotations

import asyncio

import pytest

from bench.figures import Figure, Status
from bench.issue18 import issue_figures
from bench.own_code import own_code_figure, walk_orders
from pedidos.domain.states import ALL_STATES
from tests.unit.test_bench_issue18 import e2e


@pytest.fixture
def long_stage_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    # 5d queues its orders at once whatever the environment says: honoured, these delays would
    # keep the walk past its timeout.
    monkeypatch.setenv("STAGE_DELAY_MIN_S", "60")
    monkeypatch.setenv("STAGE_DELAY_MAX_S", "60")


def test_every_order_walks_every_state_once_through_the_consumers_graph(
    long_stage_delays: None,
) -> None:
    result = asyncio.run(walk_orders(50, timeout_s=20))
    states = len(ALL_STATES)
    assert result["emails"] == result["events"] == 50 * states
    assert result["order_writes"] >= 50  # current-state documents, one per step at most
    assert result["cpu_ms_per_order"] > 0
    figure = Figure("own_code", "5d", "own code", "ms")
    own_code_figure(figure, result)
    assert figure.status is Status.OK
    assert figure.value == result["cpu_ms_per_order"]


def test_a_run_that_lost_or_repeated_e_mails_is_failed() -> None:
    result = {
        "orders": 10,
        "cpu_ms_per_order": 0.5,
        "wall_s": 0.1,
        "emails": 49,
        "email_bytes_mean": 100,
        "events": 50,
        "expected": {"emails": 50, "events": 50},
    }
    figure = Figure("own_code", "5d", "own code", "ms")
    own_code_figure(figure, result)
    assert figure.status is Status.FAILED
    assert "emails: 49 of 50" in figure.notes


def test_the_consumer_figure_says_how_much_of_it_is_its_own_code() -> None:
    own = Figure("own_code", "5d", "own code", "ms", 0.5)
    figures = {"e2e.discard": e2e("e2e.discard", 100.0, 5.0), "own_code": own}
    consumer = next(f for f in issue_figures(figures) if f.key == "issue18.consumer_cpu.discard")
    assert any("own code alone, in memory (5d): 0.50 ms (10%)" in n for n in consumer.notes)
