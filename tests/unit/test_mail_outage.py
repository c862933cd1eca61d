"""The mail outage tracker: when intake is paused, and one log line per interval."""

from __future__ import annotations

import logging

import pytest

from pedidos.services.mail_outage import MailOutage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("sending e-mail failed")]


def test_one_line_per_interval_however_many_steps_fail(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = MailOutage(log_interval_s=10, clock=clock)
    caplog.set_level(logging.INFO, "pedidos.services.mail_outage")
    with outage.step() as first, outage.step() as second:
        for _ in range(60):  # 30 s of both steps failing every half second
            outage.failed(first, "530 5.7.0 Authentication required")
            outage.failed(second, "530 5.7.0 Authentication required")
            clock.now += 0.5
        assert outage.active
        lines = outage_lines(caplog)
        # At 0 s (the first failure), 10 s and 20 s: not one per attempt.
        assert len(lines) == 3
        assert "530 5.7.0 Authentication required" in lines[0].getMessage()
        assert "intake paused" in lines[0].getMessage()
        assert lines[-1].__dict__["waiting"] == 2
        assert lines[-1].__dict__["failed_attempts"] == 81  # 2 × 40 before 20 s, then 1
        assert lines[-1].__dict__["outage_s"] == 20.0
        outage.answered()
        assert not outage.active
    assert "available again after 30.0s" in caplog.records[-1].getMessage()


def test_a_step_that_leaves_does_not_keep_intake_paused() -> None:
    outage = MailOutage()
    with outage.step() as step:
        outage.failed(step, "connection refused")
        assert outage.active
    # Cancelled (shutdown, revoke): nobody probes the server any more, so let intake probe.
    assert not outage.active


def test_any_answer_from_the_server_ends_the_outage_for_every_step() -> None:
    outage = MailOutage()
    with outage.step() as first, outage.step() as second:
        outage.failed(first, "421")
        outage.failed(second, "421")
        outage.answered()
        assert not outage.active
        outage.failed(second, "421")  # still failing: paused again
        assert outage.active
