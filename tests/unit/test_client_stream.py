"""send_stream over real gRPC against a fake CreateOrders: the window, results out of order,
per-order errors, a stream that breaks, and `--stream N` in the CLI."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterator

import grpc
import pytest

from client.cli import main
from client.orders import random_requests
from client.outcomes import Outcome
from client.stream import StreamReport, send_stream
from devkit.orders import order_request
from pedidos.v1 import orders_pb2
from tests.order_service import start_order_service
from tests.unit.fake_order_service import (
    FLAKY,
    REJECT,
    REJECTION,
    FakeOrderService,
    ProducerThread,
)

# The stream tests' invalid product.
BAD = {"bad": REJECT}
EMAIL = "ana@ejemplo.cl"


def run_stream(
    service: FakeOrderService,
    requests: list[orders_pb2.CreateOrderRequest],
    window: int,
    outcomes: list[Outcome] | None = None,
) -> StreamReport:
    async def run() -> StreamReport:
        server, address = await start_order_service(service)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                return await send_stream(
                    channel,
                    requests,
                    window,
                    timeout_s=30,
                    on_outcome=None if outcomes is None else outcomes.append,
                )
        finally:
            await server.stop(None)

    return asyncio.run(run())


def test_every_result_is_matched_to_its_request_and_the_window_holds() -> None:
    requests = [
        order_request(key=str(uuid.uuid4()), **({"product_name": "bad"} if i % 7 == 0 else {}))
        for i in range(300)
    ]
    service = FakeOrderService(BAD)
    report = run_stream(service, requests, window=16)

    assert report.stream_error is None
    assert report.sent == 300
    assert report.unanswered == 0
    bad = [i for i in range(300) if i % 7 == 0]
    assert [e.index for e in report.errors] == bad
    assert {e.code for e in report.errors} == {grpc.StatusCode.INVALID_ARGUMENT}
    assert report.order_ids() == [
        service.accepted[r.idempotency_key] for i, r in enumerate(requests) if i % 7
    ]
    assert service.max_outstanding <= 16
    assert report.rate_per_s > 0


def test_a_broken_stream_is_reported_with_what_was_answered() -> None:
    requests = [order_request(key=str(uuid.uuid4())) for _ in range(100)]
    report = run_stream(FakeOrderService(break_after=40), requests, window=8)

    assert report.stream_error == grpc.StatusCode.UNAVAILABLE
    assert report.stream_error_message == "producer going away"
    # Only results that arrived count as accepted; the rest are unknown, never successes.
    assert set(report.accepted) <= set(range(41))
    assert report.unanswered == report.sent - len(report.accepted)
    assert report.unanswered > 0


def test_the_window_must_allow_one_order() -> None:
    async def run() -> StreamReport:
        async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
            return await send_stream(channel, [], 0)

    with pytest.raises(ValueError, match="window"):
        asyncio.run(run())


def test_outcomes_are_heard_as_they_come_and_match_the_report() -> None:
    requests = [
        order_request(key=f"k-{i}", product_name="bad" if i % 5 == 0 else "ok") for i in range(40)
    ]
    outcomes: list[Outcome] = []
    report = run_stream(FakeOrderService(BAD), requests, window=4, outcomes=outcomes)

    as_summary = report.as_send_report()
    # What on_outcome heard live is exactly what the summary reports.
    summarised: list[Outcome] = [*as_summary.accepted, *as_summary.rejected]
    assert sorted(outcomes, key=lambda o: o.index) == sorted(summarised, key=lambda o: o.index)
    assert [r.index for r in as_summary.rejected] == list(range(0, 40, 5))
    assert {(r.code, r.message) for r in as_summary.rejected} == {
        (grpc.StatusCode.INVALID_ARGUMENT, REJECTION)
    }
    assert [a.idempotency_key for a in as_summary.accepted] == [
        f"k-{i}" for i in range(40) if i % 5
    ]
    assert as_summary.order_ids == report.order_ids()
    assert not as_summary.failed


def test_orders_a_broken_stream_left_unanswered_fail_with_its_status() -> None:
    requests = [order_request(key=f"k-{i}") for i in range(60)]
    outcomes: list[Outcome] = []
    report = run_stream(FakeOrderService(break_after=20), requests, window=8, outcomes=outcomes)

    as_summary = report.as_send_report()
    assert as_summary.sent == report.sent
    assert len(as_summary.failed) == report.unanswered > 0
    assert {(f.code, f.message, f.attempts) for f in as_summary.failed} == {
        (grpc.StatusCode.UNAVAILABLE, "producer going away", 1)
    }
    # Heard once each, the unanswered ones too.
    assert sorted(o.index for o in outcomes) == list(range(report.sent))
    assert {o.idempotency_key for o in outcomes} == {f"k-{i}" for i in range(report.sent)}


@pytest.fixture
def producer() -> Iterator[ProducerThread]:
    running = ProducerThread()
    yield running
    running.close()


def test_main_with_stream_sends_every_order_on_one_stream(
    producer: ProducerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    # Kafka does not acknowledge the flaky product at first: on a stream that is a failure.
    service = FakeOrderService({"Silla Gamer": REJECT, "Laptop HP": FLAKY})
    address = producer.serve(service)
    products = [r.order.product_name for r in random_requests(12, EMAIL, random.Random(7))]
    refused, unacked = products.count("Silla Gamer"), products.count("Laptop HP")
    assert refused > 0
    assert unacked > 0
    argv = ["--count", "12", "--email", EMAIL, "--yes", "--seed", "7", "--address", address]

    code = main([*argv, "--stream", "4", "--json"])

    summary = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (summary["sent"], summary["accepted"], summary["rejected"], summary["failed"]) == (
        12,
        12 - refused - unacked,
        refused,
        unacked,
    )
    assert sorted(summary["order_ids"]) == sorted(service.accepted.values())
    assert summary["rejections"] == [
        {"code": "INVALID_ARGUMENT", "message": REJECTION, "count": refused}
    ]
    # One stream, no retries: every order received once, none by CreateOrder or in a batch.
    assert sum(service.attempts.values()) == 12
    assert service.batch_calls == []
    assert service.max_outstanding <= 4


def test_main_with_stream_prints_the_usual_progress_and_summary(
    producer: ProducerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    address = producer.serve(FakeOrderService())
    argv = ["--count", "5", "--email", EMAIL, "--yes", "--address", address, "--stream", "2"]

    assert main(argv) == 0

    out = capsys.readouterr().out
    assert "[5/5] Pedido" in out
    assert "aceptado, id" in out
    assert "Resumen del envío" in out


@pytest.mark.parametrize(
    "extra", [["--stream", "0"], ["--stream", "1001"], ["--stream", "2", "--batch", "2"]]
)
def test_main_refuses_a_bad_stream_window_or_two_rpcs(
    extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--count", "1", "--yes", *extra]) == 2
    err = capsys.readouterr().err
    assert "--stream" in err
    assert "Traceback" not in err
