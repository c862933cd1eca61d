"""`python -m client --batch N` against a real producer process on the embedded stack."""

from __future__ import annotations

import json

import pytest

from client.cli import main
from devkit.net import free_port
from devkit.processes import Services
from devkit.topics import read_topic

pytestmark = pytest.mark.integration

EMAIL = "cliente@example.cl"


def send_argv(address: str, count: int, *extra: str) -> list[str]:
    return [
        "--count",
        str(count),
        "--email",
        EMAIL,
        "--yes",
        "--json",
        "--address",
        address,
        *extra,
    ]


def test_2500_orders_in_batches_of_1000_are_accepted_and_published_once(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    services.producer()
    env = services.env
    # A generous deadline: 1,000 orders per call on a busy machine must not look like an outage.
    argv = send_argv(env["PRODUCER_ADDRESS"], 2500, "--batch", "1000", "--deadline", "30")

    assert main([*argv, "--concurrency", "2"]) == 0

    summary = json.loads(capsys.readouterr().out)
    assert (summary["sent"], summary["accepted"], summary["rejected"], summary["failed"]) == (
        2500,
        2500,
        0,
        0,
    )
    order_ids = summary["order_ids"]
    assert len(set(order_ids)) == 2500
    records = read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 2500, timeout=60, settle_s=2
    )
    assert len(records) == 2500
    assert sorted((key or b"").decode() for key, _, _ in records) == sorted(order_ids)


def test_orders_kafka_never_acknowledges_fail_after_their_retries(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    # No broker: the producer answers every order of a batch UNAVAILABLE before the deadline.
    services.producer(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", GRPC_DEADLINE_S="2")
    argv = send_argv(services.env["PRODUCER_ADDRESS"], 30, "--batch", "20", "--deadline", "3")

    assert main([*argv, "--retries", "1"]) == 1

    summary = json.loads(capsys.readouterr().out)
    assert (summary["accepted"], summary["rejected"], summary["failed"]) == (0, 0, 30)
    failures = summary["failures"]
    assert {group["code"] for group in failures} == {"UNAVAILABLE"}
    assert sum(group["count"] for group in failures) == 30
    assert all("retry with the same idempotency_key" in group["message"] for group in failures)
