"""bench: the consumer's step phases from its /metrics, pooled over its workers."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import generate_latest

from bench.step_phases import step_phases
from consumer.metrics import ConsumerMetrics
from pedidos.ports import OutgoingEmail
from tests.unit.fakes import FakeIndex, FakeMailer

MESSAGE = OutgoingEmail("a@example.com", "b@example.com", "<1@pedidos>", b"x")


def worker_exposition(emails: int, index_delay_s: float) -> str:
    """What one consumer worker's /metrics serves after `emails` sends and as many document
    writes (FakeMailer takes 10 ms a send)."""

    async def work() -> ConsumerMetrics:
        metrics = ConsumerMetrics()
        mailer = metrics.mailer(FakeMailer())
        index = metrics.index(FakeIndex(write_delay_s=index_delay_s))
        for number in range(emails):
            await mailer.send_async(MESSAGE)
            await index.write_event({"order_id": f"o{number}", "state": "Procesando"})
        await asyncio.sleep(0)  # done-callbacks run on the next pass of the loop
        return metrics

    return generate_latest(asyncio.run(work()).registry).decode()


def test_the_phases_are_read_from_the_consumers_own_metrics() -> None:
    phases = step_phases([worker_exposition(3, 0.03)], slots=32, workers=1)
    assert phases is not None
    assert set(phases.mean_ms) == {"email", "ledger"}  # nothing published
    assert phases.mean_ms["email"] >= 10  # FakeMailer: 10 ms a send
    assert phases.mean_ms["ledger"] >= 30
    assert "SMTP attempt" in phases.describe()
    assert "(32 slots)" in phases.describe()


def histogram(**phases: tuple[float, int]) -> str:
    name = "pedidos_step_phase_duration_seconds"
    lines = [f"# TYPE {name} histogram"]
    for phase, (total, count) in phases.items():
        lines += [
            f'{name}_bucket{{phase="{phase}",le="+Inf"}} {count}',
            f'{name}_count{{phase="{phase}"}} {count}',
            f'{name}_sum{{phase="{phase}"}} {total}',
        ]
    return "\n".join(lines) + "\n"


def test_workers_are_pooled_by_their_sums_and_counts() -> None:
    one = histogram(email=(0.2, 10), ledger=(0.3, 10), publish=(0.05, 10))
    two = histogram(email=(0.6, 20), ledger=(0.3, 20), publish=(0.1, 20))
    phases = step_phases([one, two], slots=32, workers=2)
    assert phases is not None
    assert phases.mean_ms["email"] == pytest.approx(800 / 30)  # not the mean of means (25)
    assert phases.mean_ms["ledger"] == pytest.approx(20.0)
    assert phases.mean_ms["publish"] == pytest.approx(5.0)
    assert "(32 slots per worker × 2)" in phases.describe()
    assert step_phases([histogram(email=(0.0, 0))], slots=32, workers=1) is None
