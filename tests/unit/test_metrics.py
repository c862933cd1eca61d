"""The measured ports and the metrics endpoint, on a private registry and a real HTTP socket."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from consumer.metrics import ConsumerMetrics
from devkit.net import http_get
from pedidos.adapters.metrics.endpoint import Heartbeat, MetricsEndpoint
from pedidos.domain.states import OrderState
from pedidos.ports import MailOutageError, OutgoingEmail, PermanentMailError, TransientMailError
from tests.unit.fakes import FakeIndex, FakeMailer

MESSAGE = OutgoingEmail(
    message_id="<1@pedidos>", sender="a@example.com", recipient="b@example.com", data=b"x"
)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_emails_are_counted_by_result_and_every_attempt_is_timed() -> None:
    asyncio.run(_test_emails_are_counted_by_result_and_every_attempt_is_timed())


async def _test_emails_are_counted_by_result_and_every_attempt_is_timed() -> None:
    metrics = ConsumerMetrics()
    mailer = metrics.mailer(
        FakeMailer(TransientMailError("421"), MailOutageError("refused"), PermanentMailError("550"))
    )
    for _ in range(3):
        with pytest.raises((TransientMailError, PermanentMailError)):
            await mailer.send_async(MESSAGE)
    await mailer.send_async(MESSAGE)
    registry = metrics.registry
    assert sample(registry, "pedidos_emails_total", result="retried") == 2
    assert sample(registry, "pedidos_emails_total", result="rejected") == 1
    assert sample(registry, "pedidos_emails_total", result="sent") == 1
    count = sample(registry, "pedidos_step_phase_duration_seconds_count", phase="email")
    assert count == 4
    # FakeMailer waits 10 ms per attempt.
    total = sample(registry, "pedidos_step_phase_duration_seconds_sum", phase="email")
    assert total >= 0.04


def test_publishes_and_index_writes_are_timed_when_they_settle() -> None:
    asyncio.run(_test_publishes_and_index_writes_are_timed_when_they_settle())


async def _test_publishes_and_index_writes_are_timed_when_they_settle() -> None:
    metrics = ConsumerMetrics()
    # As the Kafka publisher tells it (tests/integration/test_publisher_partitions.py).
    metrics.publishes.settled("Pedidos.estados", 0.25, True)
    metrics.publishes.settled("Pedidos.estados", 0.5, False)
    index = metrics.index(FakeIndex(write_delay_s=0.02))
    await index.write_event({"order_id": "o", "state": "Procesando"})
    await index.write_order({"order_id": "o", "state": "Procesando"})
    await index.write_order({"order_id": "o", "state": "Preparación"})
    await asyncio.sleep(0)  # done-callbacks run on the next pass of the loop
    registry = metrics.registry
    sent = "messaging_client_sent_messages_total"
    labels = {
        "messaging_system": "kafka",
        "messaging_operation_name": "send",
        "messaging_destination_name": "Pedidos.estados",
    }
    assert sample(registry, sent, **labels, error_type="") == 1
    assert sample(registry, sent, **labels, error_type="publish_error") == 1
    assert sample(registry, "pedidos_step_phase_duration_seconds_count", phase="publish") == 2
    assert sample(registry, "pedidos_step_phase_duration_seconds_sum", phase="publish") == 0.75
    duration = "messaging_client_operation_duration_seconds_sum"
    assert sample(registry, duration, **labels) == 0.75
    phases = "pedidos_step_phase_duration_seconds"
    assert sample(registry, f"{phases}_count", phase="ledger") == 1  # the event alone
    assert sample(registry, f"{phases}_sum", phase="ledger") >= 0.02
    assert sample(registry, f"{phases}_count", phase="current_state") == 2
    assert sample(registry, f"{phases}_sum", phase="current_state") < 0.02  # FakeIndex: at once
    assert sample(registry, "pedidos_index_write_failures_total") == 0


def test_a_failed_index_write_is_counted() -> None:
    asyncio.run(_test_a_failed_index_write_is_counted())


async def _test_a_failed_index_write_is_counted() -> None:
    metrics = ConsumerMetrics()

    class BrokenIndex(FakeIndex):
        def write_order(self, doc: dict[str, object]) -> asyncio.Future[None]:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_exception(ConnectionError("es down"))
            return future

    with pytest.raises(ConnectionError):
        await metrics.index(BrokenIndex()).write_order({"order_id": "o"})
    await asyncio.sleep(0)
    assert sample(metrics.registry, "pedidos_index_write_failures_total") == 1


def test_steps_are_counted_by_state_and_outcome() -> None:
    metrics = ConsumerMetrics()
    metrics.step(OrderState.PROCESANDO, "done")
    metrics.step(OrderState.PROCESANDO, "done")
    metrics.step(OrderState.ENVIADO, "handed_back")
    metrics.step(None, "dead_lettered")
    registry = metrics.registry
    assert sample(registry, "pedidos_steps_total", state="Procesando", outcome="done") == 2
    assert sample(registry, "pedidos_steps_total", state="Enviado", outcome="handed_back") == 1
    assert sample(registry, "pedidos_steps_total", state="unknown", outcome="dead_lettered") == 1


def test_the_endpoint_serves_metrics_liveness_and_readiness() -> None:
    metrics = ConsumerMetrics()
    metrics.step(OrderState.FINALIZADO, "done")
    verdict = [(False, "no partitions assigned")]
    endpoint = MetricsEndpoint(
        metrics.registry, Heartbeat(), lambda: verdict[0], "127.0.0.1", 0
    ).start()
    try:
        status, text = http_get(endpoint.port, "/metrics")
        assert status == 200
        assert 'pedidos_steps_total{outcome="done",state="Finalizado"} 1.0' in text
        assert http_get(endpoint.port, "/healthz") == (200, "ok\n")
        assert http_get(endpoint.port, "/readyz") == (503, "no partitions assigned\n")
        verdict[0] = (True, "ok: 12 partitions")
        assert http_get(endpoint.port, "/readyz") == (200, "ok: 12 partitions\n")
        assert http_get(endpoint.port, "/otra")[0] == 404
    finally:
        endpoint.close()


def test_a_check_that_raises_is_not_ready_and_a_stalled_loop_is_not_live() -> None:
    def broken() -> tuple[bool, str]:
        raise ConnectionError("kaput")

    heartbeat = Heartbeat(stall_s=0.05)  # never started: no beat comes
    endpoint = MetricsEndpoint(CollectorRegistry(), heartbeat, broken, "127.0.0.1", 0).start()
    try:
        assert http_get(endpoint.port, "/readyz") == (503, "ConnectionError: kaput\n")
        time.sleep(0.1)
        status, body = http_get(endpoint.port, "/healthz")
        assert status == 503
        assert "stalled" in body
    finally:
        endpoint.close()


def test_a_turning_loop_is_live_and_a_blocked_one_is_not() -> None:
    async def scenario() -> tuple[bool, bool]:
        heartbeat = Heartbeat(stall_s=0.3, beat_s=0.05)
        heartbeat.start()
        try:
            await asyncio.sleep(0.5)  # longer than stall_s: only the beats keep it live
            turning = heartbeat.live()[0]
            time.sleep(0.5)  # noqa: ASYNC251 - the point: a blocking call holds the loop
            return turning, heartbeat.live()[0]
        finally:
            heartbeat.stop()

    assert asyncio.run(scenario()) == (True, False)
