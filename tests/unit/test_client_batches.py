"""send_batches over real gRPC against a fake CreateOrderBatch: calls of N, outcomes in order,
per-order and whole-call retries with the same requests, lazy reading, and `--batch` in the CLI."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterable, Iterator

import grpc
import pytest

from client.batch import MAX_BATCH_SIZE, send_batches
from client.cli import main
from client.connection import ProducerUnreachable
from client.orders import random_requests
from client.outcomes import Outcome, SendReport
from client.send import send_to_producer
from devkit.net import free_port
from pedidos.runtime.retry import Backoff
from pedidos.v1 import orders_pb2
from tests.order_service import start_order_service
from tests.unit.fake_order_service import (
    ACCEPT,
    BEHAVIOURS,
    DOWN,
    FLAKY,
    NOT_ACKED,
    ODD,
    REJECT,
    REJECTION,
    FakeOrderService,
    ProducerThread,
)

EMAIL = "ana@ejemplo.cl"
FAST_BACKOFF = Backoff(initial_s=0.01, max_s=0.05)


def _request(product: str, key: str) -> orders_pb2.CreateOrderRequest:
    base = next(random_requests(1, EMAIL, random.Random(0)))
    base.order.product_name = product
    base.idempotency_key = key
    return base


def _orders(*behaviours: str) -> list[orders_pb2.CreateOrderRequest]:
    return [_request(behaviour, f"{behaviour}-{i}") for i, behaviour in enumerate(behaviours)]


def _send(
    service: FakeOrderService,
    orders: Iterable[orders_pb2.CreateOrderRequest],
    *,
    batch_size: int,
    concurrency: int = 1,
    deadline_s: float = 2.0,
    retries: int = 3,
    outcomes: list[Outcome] | None = None,
) -> SendReport:
    """send_batches against `service` on an in-process server of the same event loop."""

    async def run() -> SendReport:
        server, address = await start_order_service(service)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                return await send_batches(
                    channel,
                    orders,
                    batch_size,
                    concurrency,
                    deadline_s,
                    retries,
                    backoff=FAST_BACKOFF,
                    on_outcome=None if outcomes is None else outcomes.append,
                )
        finally:
            await server.stop(None)

    return asyncio.run(run())


def test_orders_go_in_calls_of_n_and_outcomes_come_back_in_order() -> None:
    service = FakeOrderService()
    requests = _orders(*[ACCEPT] * 25)
    outcomes: list[Outcome] = []

    report = _send(service, requests, batch_size=10, concurrency=2, outcomes=outcomes)

    assert sorted(len(call) for call in service.batch_calls) == [5, 10, 10]
    assert sorted(key for call in service.batch_calls for key in call) == sorted(
        r.idempotency_key for r in requests
    )
    assert report.all_accepted
    assert [a.index for a in report.accepted] == list(range(25))
    assert report.order_ids == [service.accepted[r.idempotency_key] for r in requests]
    assert {a.attempts for a in report.accepted} == {1}
    # The progress display hears of every order exactly once.
    assert sorted(o.index for o in outcomes) == list(range(25))


def test_per_order_errors_become_rejections_and_the_rest_is_accepted() -> None:
    service = FakeOrderService(BEHAVIOURS)
    requests = _orders(ACCEPT, REJECT, ACCEPT, ODD, ACCEPT, REJECT)

    report = _send(service, requests, batch_size=4)

    assert [(r.index, r.code, r.message) for r in report.rejected] == [
        (1, grpc.StatusCode.INVALID_ARGUMENT, REJECTION),
        (3, grpc.StatusCode.UNKNOWN, "no such code"),
        (5, grpc.StatusCode.INVALID_ARGUMENT, REJECTION),
    ]
    assert {r.attempts for r in report.rejected} == {1}
    assert all(len(sent) == 1 for sent in service.received.values()), "never resent"
    assert [a.index for a in report.accepted] == [0, 2, 4]
    assert not report.failed


def test_unavailable_orders_are_resent_alone_with_the_identical_request() -> None:
    service = FakeOrderService(BEHAVIOURS)
    requests = _orders(ACCEPT, FLAKY, ACCEPT, FLAKY, FLAKY, ACCEPT)
    flaky_keys = [r.idempotency_key for r in requests if r.idempotency_key.startswith(FLAKY)]

    report = _send(service, requests, batch_size=6)

    assert report.all_accepted
    # Only the unconfirmed orders go in the second call, as the very same requests (same keys).
    assert service.batch_calls == [[r.idempotency_key for r in requests], flaky_keys]
    for request in requests:
        sent = service.received[request.idempotency_key]
        assert set(sent) == {request.SerializeToString()}
    assert {a.idempotency_key for a in report.accepted if a.attempts == 2} == set(flaky_keys)
    assert report.order_ids == [service.accepted[r.idempotency_key] for r in requests]


def test_orders_still_unavailable_after_every_retry_fail() -> None:
    service = FakeOrderService(BEHAVIOURS)
    requests = _orders(ACCEPT, DOWN, ACCEPT)
    retries = 2

    report = _send(service, requests, batch_size=3, retries=retries)

    [failed] = report.failed
    assert (failed.index, failed.code, failed.message) == (
        1,
        grpc.StatusCode.UNAVAILABLE,
        NOT_ACKED,
    )
    assert failed.attempts == retries + 1
    assert len(service.received[failed.idempotency_key]) == retries + 1
    assert [a.index for a in report.accepted] == [0, 2]
    assert report.failure_groups()[0].count == 1


@pytest.mark.parametrize(
    "call_error", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED]
)
def test_a_whole_call_that_fails_retryably_is_resent(call_error: grpc.StatusCode) -> None:
    service = FakeOrderService(failing_calls=1, call_error=call_error)
    requests = _orders(*[ACCEPT] * 8)
    keys = [r.idempotency_key for r in requests]

    report = _send(service, requests, batch_size=5, deadline_s=0.5)

    assert report.all_accepted
    assert service.batch_calls == [keys[:5], keys[:5], keys[5:]]
    assert [a.attempts for a in report.accepted] == [2] * 5 + [1] * 3
    assert report.order_ids == [service.accepted[key] for key in keys]


def test_a_whole_call_failing_on_every_attempt_fails_each_of_its_orders() -> None:
    service = FakeOrderService(failing_calls=100)
    retries = 2

    report = _send(service, _orders(ACCEPT, ACCEPT, ACCEPT), batch_size=3, retries=retries)

    assert [(f.index, f.code, f.attempts) for f in report.failed] == [
        (i, grpc.StatusCode.UNAVAILABLE, retries + 1) for i in range(3)
    ]
    assert len(service.batch_calls) == retries + 1
    assert not report.accepted


def test_a_whole_call_refused_for_good_rejects_each_of_its_orders() -> None:
    service = FakeOrderService(failing_calls=1, call_error=grpc.StatusCode.RESOURCE_EXHAUSTED)
    requests = _orders(*[ACCEPT] * 4)

    report = _send(service, requests, batch_size=2)

    assert [(r.index, r.code, r.message, r.attempts) for r in report.rejected] == [
        (0, grpc.StatusCode.RESOURCE_EXHAUSTED, "broker unreachable", 1),
        (1, grpc.StatusCode.RESOURCE_EXHAUSTED, "broker unreachable", 1),
    ]
    assert [a.index for a in report.accepted] == [2, 3]
    assert len(service.batch_calls) == 2


@pytest.mark.parametrize("concurrency", [1, 3])
def test_never_more_calls_in_flight_than_the_limit(concurrency: int) -> None:
    service = FakeOrderService(work_s=0.03)

    report = _send(service, _orders(*[ACCEPT] * 40), batch_size=4, concurrency=concurrency)

    assert report.all_accepted
    assert service.max_in_flight == concurrency


def test_a_lazy_generator_is_read_only_as_far_as_the_calls_in_flight_need() -> None:
    batch_size, concurrency, total = 10, 3, 200
    outcomes: list[Outcome] = []
    pulled = 0
    most_ahead = 0

    def lazily() -> Iterator[orders_pb2.CreateOrderRequest]:
        nonlocal pulled, most_ahead
        for request in random_requests(total, EMAIL, random.Random(1)):
            pulled += 1
            most_ahead = max(most_ahead, pulled - len(outcomes))
            yield request

    report = _send(
        FakeOrderService(),
        lazily(),
        batch_size=batch_size,
        concurrency=concurrency,
        outcomes=outcomes,
    )

    assert len(report.accepted) == total
    # Never more orders read than settled plus one batch per call in flight, and the calls
    # really did overlap.
    assert most_ahead == batch_size * concurrency


@pytest.mark.parametrize("batch_size", [0, MAX_BATCH_SIZE + 1])
def test_the_batch_size_must_be_one_the_producer_accepts(batch_size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        _send(FakeOrderService(), _orders(ACCEPT), batch_size=batch_size)


# -- send_to_producer and the command line ------------------------------------------------------
@pytest.fixture
def producer() -> Iterator[ProducerThread]:
    running = ProducerThread()
    yield running
    running.close()


def test_send_to_producer_with_a_batch_size_uses_create_order_batch(
    producer: ProducerThread,
) -> None:
    # Every order arrived in a CreateOrderBatch call (CreateOrder calls are not recorded there).
    service = FakeOrderService()
    address = producer.serve(service)

    report = asyncio.run(
        send_to_producer(address, _orders(ACCEPT, ACCEPT, ACCEPT), 2, 2.0, batch_size=2)
    )

    assert report.all_accepted
    assert sorted(len(call) for call in service.batch_calls) == [1, 2]
    assert sum(service.attempts.values()) == 3


def test_send_to_producer_in_batches_reports_an_unreachable_producer() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ProducerUnreachable, match="No se pudo conectar con el productor"):
        asyncio.run(send_to_producer(address, _orders(ACCEPT), 1, 0.3, batch_size=10))


def test_main_with_batch_sends_calls_of_n_and_prints_the_usual_summary(
    producer: ProducerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    service = FakeOrderService({"Silla Gamer": REJECT, "Laptop HP": FLAKY})
    address = producer.serve(service)
    products = [r.order.product_name for r in random_requests(12, EMAIL, random.Random(7))]
    refused = products.count("Silla Gamer")
    # Seed 7 must exercise both paths, or this test would prove nothing.
    assert 0 < refused < 12
    assert "Laptop HP" in products
    argv = ["--count", "12", "--email", EMAIL, "--yes", "--seed", "7", "--address", address]

    code = main([*argv, "--deadline", "2", "--batch", "5", "--concurrency", "2", "--json"])

    summary = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (summary["sent"], summary["accepted"], summary["rejected"], summary["failed"]) == (
        12,
        12 - refused,
        refused,
        0,
    )
    assert summary["rejections"] == [
        {"code": "INVALID_ARGUMENT", "message": REJECTION, "count": refused}
    ]
    assert sorted(summary["order_ids"]) == sorted(service.accepted.values())
    # Calls of five orders (the last one of two), plus calls resending only flaky orders.
    seen: set[str] = set()
    first_calls = []
    for call in service.batch_calls:
        if seen.isdisjoint(call):
            first_calls.append(len(call))
        else:
            assert seen.issuperset(call), "a call mixes new orders and retries"
        seen.update(call)
    assert sorted(first_calls) == [2, 5, 5]
    resent = {key for key, sent in service.received.items() if len(sent) > 1}
    assert resent == {
        key
        for key, sent in service.received.items()
        if orders_pb2.CreateOrderRequest.FromString(sent[0]).order.product_name == "Laptop HP"
    }


@pytest.mark.parametrize("batch", ["0", "1001", "diez"])
def test_main_refuses_a_batch_size_out_of_range(
    batch: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--count", "1", "--yes", "--batch", batch]) == 2
    err = capsys.readouterr().err
    assert "--batch" in err
    assert "Traceback" not in err
