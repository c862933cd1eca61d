"""How `LagReader.describe` waits out a group coordinator that is still starting.

librdkafka's describe, answered by a scripted stand-in: the two behaviours waited out here
(a lookup that ran out of retries ending only at the request timeout; the coordinator's
"not available" while the offsets topic is created) show on a new broker only some of the
time, so a real one cannot produce them on demand. `admin setup` against a real new broker is
tested in tests/integration/test_embedded_kafka.py.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from devkit.net import free_port
from pedidos.adapters.kafka import lag
from pedidos.adapters.kafka.lag import LagError, LagReader

DESCRIPTION = object()
PENDING = "pending"  # a future nobody completes: Python's own timeout ends the wait


class ScriptedAdmin:
    def __init__(self, *outcomes: int | str | None) -> None:
        self.outcomes = list(outcomes)
        self.request_timeouts: list[float] = []

    def describe_consumer_groups(
        self, groups: list[str], request_timeout: float
    ) -> dict[str, Future[Any]]:
        self.request_timeouts.append(request_timeout)
        outcome = self.outcomes.pop(0) if self.outcomes else KafkaError._TIMED_OUT
        future: Future[Any] = Future()
        if outcome is None:
            future.set_result(DESCRIPTION)
        elif isinstance(outcome, int):
            future.set_exception(KafkaException(KafkaError(outcome)))
        return {group: future for group in groups}


def reader(admin: ScriptedAdmin, timeout_s: float = 10) -> LagReader:
    lag_reader = LagReader(f"127.0.0.1:{free_port()}", timeout_s=timeout_s)
    lag_reader._admin = admin  # type: ignore[assignment]
    return lag_reader


def test_a_lookup_that_timed_out_is_asked_again_with_a_longer_attempt() -> None:
    admin = ScriptedAdmin(KafkaError._TIMED_OUT, KafkaError._TIMED_OUT, None)
    assert reader(admin).describe(["g"]) == {"g": DESCRIPTION}
    assert admin.request_timeouts == [1.0, 2.0, 4.0]


def test_a_coordinator_still_loading_is_waited_for() -> None:
    admin = ScriptedAdmin(
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        None,
    )
    assert reader(admin).describe(["g"]) == {"g": DESCRIPTION}
    assert len(admin.request_timeouts) == 4


def test_attempts_never_outgrow_the_timeout() -> None:
    admin = ScriptedAdmin(*[KafkaError.NOT_COORDINATOR] * 6, None)
    reader(admin, timeout_s=3).describe(["g"])
    assert admin.request_timeouts == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0]


def test_an_error_that_is_not_a_starting_coordinator_is_raised_at_once() -> None:
    admin = ScriptedAdmin(KafkaError.GROUP_AUTHORIZATION_FAILED)
    with pytest.raises(LagError, match="GROUP_AUTHORIZATION_FAILED"):
        reader(admin).describe(["g"])
    assert len(admin.request_timeouts) == 1


def test_timeouts_are_retried_for_one_timeout_in_all() -> None:
    # Every attempt times out (the broker went away): reported after ~one timeout, not three.
    admin = ScriptedAdmin()
    with pytest.raises(LagError) as raised:
        reader(admin, timeout_s=0.3).describe(["g"], coordinator_wait_s=60)
    assert raised.value.code == KafkaError._TIMED_OUT
    assert 2 <= len(admin.request_timeouts) <= 8


def test_an_answer_that_never_comes_counts_as_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lag, "_FIRST_ATTEMPT_S", 0.05)
    admin = ScriptedAdmin(PENDING, None)
    assert reader(admin, timeout_s=1).describe(["g"]) == {"g": DESCRIPTION}
    assert admin.request_timeouts == [0.05, 0.1]


def test_a_coordinator_that_never_starts_is_reported_at_the_wait_s_end() -> None:
    admin = ScriptedAdmin(*[KafkaError.COORDINATOR_NOT_AVAILABLE] * 1000)
    with pytest.raises(LagError, match="COORDINATOR_NOT_AVAILABLE"):
        reader(admin, timeout_s=0.1).describe(["g"], coordinator_wait_s=0.3)
    assert 2 <= len(admin.request_timeouts) < 1000
