"""Sending over real gRPC: concurrency limit, deadlines, retries with the same key, the report."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping

import grpc
import pytest

from client.__main__ import main
from client.orders import random_requests
from client.sender import (
    Backoff,
    ErrorGroup,
    ProducerUnreachable,
    SendReport,
    send_orders,
    send_to_producer,
)
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from tests.support import start_order_service

EMAIL = "ana@ejemplo.cl"
REJECTION = "price.amount_minor: must be greater than zero"
ID_NAMESPACE = uuid.UUID("0b6e5c2a-8a51-4f4b-9d0e-3f1f4f3c9a10")

ACCEPT, REJECT, FLAKY, SLOW = "accept", "reject", "flaky", "slow"


class FakeOrderService(orders_pb2_grpc.OrderServiceServicer):
    """Stands in only for the producer's business logic: the gRPC transport under test is real.

    What it does with a request depends on the order's product name (`behaviour_by_product`):
    accept, reject with INVALID_ARGUMENT, fail the first attempt with UNAVAILABLE, or never
    answer. It records every attempt per idempotency key and the most calls it had in flight.
    """

    def __init__(self, behaviour_by_product: Mapping[str, str], work_s: float = 0.02) -> None:
        self.behaviour_by_product = dict(behaviour_by_product)
        self.work_s = work_s
        self.attempts: Counter[str] = Counter()
        self.accepted: dict[str, str] = {}
        self.emails: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0

    async def CreateOrder(
        self, request: orders_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> orders_pb2.CreateOrderResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            key = request.idempotency_key
            self.attempts[key] += 1
            self.emails.add(request.order.customer_email)
            behaviour = self.behaviour_by_product.get(request.order.product_name, ACCEPT)
            await asyncio.sleep(self.work_s)
            if behaviour == REJECT:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, REJECTION)
            if behaviour == FLAKY and self.attempts[key] == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "Kafka did not acknowledge")
            if behaviour == SLOW:
                await asyncio.sleep(5)  # far beyond every deadline used here
            order_id = str(uuid.uuid5(ID_NAMESPACE, key))
            self.accepted[key] = order_id
            return orders_pb2.CreateOrderResponse(
                order_id=order_id, state=orders_pb2.ORDER_STATE_PROCESANDO
            )
        finally:
            self.in_flight -= 1


class ProducerThread:
    """grpc.aio servers on an event loop of their own thread, on free ports of 127.0.0.1.

    A separate loop because the code under test runs its own (`main()` calls asyncio.run).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[grpc.aio.Server] = []

    def serve(self, servicer: FakeOrderService) -> str:
        server, address = asyncio.run_coroutine_threadsafe(
            start_order_service(servicer), self.loop
        ).result(10)
        self.servers.append(server)
        return address

    def close(self) -> None:
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


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


FAST_BACKOFF = Backoff(base_s=0.01, max_s=0.05)
BEHAVIOURS = {behaviour: behaviour for behaviour in (ACCEPT, REJECT, FLAKY, SLOW)}


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
    service = FakeOrderService(BEHAVIOURS)
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
    service = FakeOrderService(BEHAVIOURS)
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
    service = FakeOrderService(BEHAVIOURS)
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
    service = FakeOrderService(BEHAVIOURS)
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


def test_backoff_grows_exponentially_within_its_cap() -> None:
    backoff, rng = Backoff(base_s=0.1, max_s=0.5), random.Random(0)
    for retry, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (10, 0.5)]:
        delays = [backoff.delay(retry, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole window


def _main_argv(address: str, *extra: str) -> list[str]:
    return [
        "--count", "12", "--email", EMAIL, "--yes", "--seed", "7",
        "--address", address, "--concurrency", "3", "--deadline", "2", *extra,
    ]  # fmt: skip


def test_main_json_reports_rejections_and_accepted_ids(
    producer: ProducerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    # Catalogue products drive the fake: one is refused, another needs a retry.
    service = FakeOrderService({"Silla Gamer": REJECT, "Laptop HP": FLAKY})
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
    address = producer.serve(FakeOrderService({}))
    assert main(_main_argv(address, "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["accepted"], summary["rejected"], summary["failed"]) == (12, 0, 0)


def test_main_prints_plain_progress_and_summary_when_not_a_terminal(
    producer: ProducerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    address = producer.serve(FakeOrderService({"Silla Gamer": REJECT}))
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
