"""CreateOrder over real gRPC: concurrency limit, deadlines, retries with the same key and the
shared backoff, the report, and the default send command."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import Iterator

import grpc
import pytest

from client.cli import main
from client.connection import ProducerUnreachable
from client.orders import random_requests
from client.outcomes import ErrorGroup, SendReport
from client.send import send_to_producer
from client.unary import send_orders
from pedidos.runtime.retry import Backoff
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from tests.unit.fake_order_service import (
    BEHAVIOURS,
    FLAKY,
    REJECT,
    REJECTION,
    FakeOrderService,
    ProducerThread,
)

EMAIL = "ana@ejemplo.cl"
# The CreateOrder fake of these tests spends this long on every call.
WORK_S = 0.02


@pytest.fixture
def producer() -> Iterator[ProducerThread]:
    running = ProducerThread()
    yield running
    running.close()


def _request(product: str, key: str) -> orders_pb2.CreateOrderRequest:
    base = next(random_requests(1, EMAIL, random.Random(0)))
    base.order.product_name = product
    base.idempotency_key = key
    return base


def _batch(**counts: int) -> list[orders_pb2.CreateOrderRequest]:
    """`counts` maps behaviour → how many; interleaved so problems are spread over the batch."""
    plan = [behaviour for behaviour, n in counts.items() for _ in range(n)]
    random.Random(5).shuffle(plan)
    return [_request(behaviour, f"{behaviour}-{i}") for i, behaviour in enumerate(plan)]


FAST_BACKOFF = Backoff(initial_s=0.01, max_s=0.05)


def _send(
    address: str,
    requests: list[orders_pb2.CreateOrderRequest],
    *,
    concurrency: int,
    deadline_s: float = 2.0,
    retries: int = 3,
) -> SendReport:
    async def run() -> SendReport:
        async with grpc.aio.insecure_channel(address) as channel:
            return await send_orders(
                channel, requests, concurrency, deadline_s, retries, backoff=FAST_BACKOFF
            )

    return asyncio.run(run())


def test_report_counts_every_outcome(producer: ProducerThread) -> None:
    service = FakeOrderService(BEHAVIOURS, work_s=WORK_S)
    address = producer.serve(service)
    requests = _batch(accept=12, reject=3, flaky=3, slow=1)
    deadline_s, retries = 0.3, 2

    report = _send(address, requests, concurrency=4, deadline_s=deadline_s, retries=retries)

    assert report.sent == 19
    assert len(report.accepted) == 15
    assert report.rejection_groups() == [ErrorGroup(grpc.StatusCode.INVALID_ARGUMENT, REJECTION, 3)]
    assert all(r.attempts == 1 for r in report.rejected), "INVALID_ARGUMENT must not be retried"
    assert not report.all_accepted
    # Accepted ids are the server's answers, in the batch's order.
    accepted_keys = [
        r.idempotency_key for r in requests if not r.idempotency_key.startswith(("reject", "slow"))
    ]
    assert report.order_ids == [service.accepted[key] for key in accepted_keys]


def test_unavailable_is_retried_with_the_same_idempotency_key(producer: ProducerThread) -> None:
    service = FakeOrderService(BEHAVIOURS, work_s=WORK_S)
    address = producer.serve(service)
    requests = _batch(accept=4, flaky=3)

    report = _send(address, requests, concurrency=3)

    assert report.all_accepted
    flaky_keys = {r.idempotency_key for r in requests if r.idempotency_key.startswith("flaky")}
    # Had a retry minted a new key, the server would have seen more keys, each once.
    assert set(service.attempts) == {r.idempotency_key for r in requests}
    assert {key: service.attempts[key] for key in flaky_keys} == dict.fromkeys(flaky_keys, 2)
    assert {a.idempotency_key for a in report.accepted if a.attempts == 2} == flaky_keys


def test_an_order_that_never_answers_fails_at_the_deadline(producer: ProducerThread) -> None:
    service = FakeOrderService(BEHAVIOURS, work_s=WORK_S)
    address = producer.serve(service)
    requests = _batch(accept=2, slow=1)
    deadline_s, retries = 0.3, 2

    started = time.monotonic()
    report = _send(address, requests, concurrency=2, deadline_s=deadline_s, retries=retries)
    elapsed = time.monotonic() - started

    [failed] = report.failed
    assert failed.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert failed.attempts == retries + 1
    assert service.attempts[failed.idempotency_key] == retries + 1
    assert len(report.accepted) == 2
    # Three attempts of 0.3 s plus short backoffs; without a deadline one attempt alone takes 5 s.
    assert elapsed < (retries + 1) * deadline_s + 1.0
    assert report.failure_groups()[0].count == 1


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_never_more_calls_in_flight_than_the_limit(
    producer: ProducerThread, concurrency: int
) -> None:
    service = FakeOrderService(BEHAVIOURS, work_s=0.03)
    address = producer.serve(service)

    report = _send(address, _batch(accept=24), concurrency=concurrency)

    assert report.all_accepted
    assert len(report.accepted) == 24
    # Reaching the limit shows the calls really overlap; never exceeding it is the guarantee.
    assert service.max_in_flight == concurrency


def test_a_stub_works_as_well_as_a_channel(producer: ProducerThread) -> None:
    service = FakeOrderService(BEHAVIOURS, work_s=WORK_S)
    address = producer.serve(service)

    async def run() -> SendReport:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            return await send_orders(stub, _batch(accept=3), 2, 2.0)

    assert len(asyncio.run(run()).order_ids) == 3


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_producer_raises_a_clear_error() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ProducerUnreachable, match="No se pudo conectar con el productor"):
        asyncio.run(send_to_producer(address, _batch(accept=1), 1, 0.3))


def test_retries_wait_the_shared_backoff_between_attempts(producer: ProducerThread) -> None:
    # The shared policy's jitter: the first pause is 0.5-1.5 times `initial_s`, here 0.3-0.9 s
    # (the client's default backoff would pause 0.1-0.3 s, no backoff not at all).
    service = FakeOrderService(BEHAVIOURS, work_s=0.0)
    address = producer.serve(service)
    pauses = Backoff(initial_s=0.6, max_s=0.6)

    async def run() -> SendReport:
        async with grpc.aio.insecure_channel(address) as channel:
            return await send_orders(channel, _batch(flaky=1), 1, 2.0, 3, backoff=pauses)

    started = time.monotonic()
    report = asyncio.run(run())
    elapsed = time.monotonic() - started

    assert report.all_accepted
    assert report.accepted[0].attempts == 2
    assert 0.3 <= elapsed < 0.9 + 1.0


def _main_argv(address: str, *extra: str) -> list[str]:
    return [
        "--count", "12", "--email", EMAIL, "--yes", "--seed", "7",
        "--address", address, "--concurrency", "3", "--deadline", "2", *extra,
    ]  # fmt: skip


def test_main_json_reports_rejections_and_accepted_ids(
    producer: ProducerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    # Catalogue products drive the fake: one is refused, another needs a retry.
    service = FakeOrderService({"Silla Gamer": REJECT, "Laptop HP": FLAKY}, work_s=WORK_S)
    address = producer.serve(service)
    products = [r.order.product_name for r in random_requests(12, EMAIL, random.Random(7))]
    refused = products.count("Silla Gamer")
    # Seed 7 must exercise both paths, or this test would prove nothing.
    assert 0 < refused < 12
    assert "Laptop HP" in products

    code = main(_main_argv(address, "--json"))

    summary = json.loads(capsys.readouterr().out)
    assert code == 1
    assert summary["sent"] == 12
    assert summary["accepted"] == 12 - refused
    assert summary["rejected"] == refused
    assert summary["failed"] == 0
    assert summary["rejections"] == [
        {"code": "INVALID_ARGUMENT", "message": REJECTION, "count": refused}
    ]
    assert sorted(summary["order_ids"]) == sorted(service.accepted.values())
    assert len(summary["order_ids"]) == 12 - refused
    assert summary["rate_per_s"] > 0
    assert service.emails == {EMAIL}


def test_main_exits_zero_when_every_order_is_accepted(
    producer: ProducerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    address = producer.serve(FakeOrderService(work_s=WORK_S))
    assert main(_main_argv(address, "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["accepted"], summary["rejected"], summary["failed"]) == (12, 0, 0)


def test_main_prints_plain_progress_and_summary_when_not_a_terminal(
    producer: ProducerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    address = producer.serve(FakeOrderService({"Silla Gamer": REJECT}, work_s=WORK_S))
    assert main(_main_argv(address)) == 1
    out = capsys.readouterr().out
    assert "[12/12] Pedido" in out
    assert "aceptado, id" in out
    assert "rechazado (INVALID_ARGUMENT" in out
    assert "Resumen del envío" in out
    assert "Rechazos" in out


def test_main_reports_an_unreachable_producer_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    code = main(["--count", "2", "--yes", "--json", "--address", address, "--deadline", "0.3"])
    captured = capsys.readouterr()
    assert code == 1
    assert "No se pudo conectar con el productor" in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_main_config_error_is_one_line_and_exit_two(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRPC_DEADLINE_S", "pronto")
    assert main(["--count", "1", "--yes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("invalid configuration: GRPC_DEADLINE_S")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--count", "0", "--yes"],
        ["--count", "dos", "--yes"],
        ["--count", "1", "--yes", "--concurrency", "0"],
        ["--count", "1", "--yes", "--deadline", "-1"],
        ["--count", "1", "--yes", "--email", "no-es-correo"],
    ],
)
def test_main_usage_errors_exit_two(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
