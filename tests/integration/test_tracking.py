"""GetOrder and WatchOrder against real producer and consumer processes on the embedded stack."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from datetime import UTC
from typing import Any

import grpc
import pytest

from client.stream import send_stream
from devkit.credentials import aio_producer_channel, producer_channel
from devkit.net import free_port
from devkit.orders import order_request
from devkit.processes import ServiceProcess, Services
from devkit.waiting import wait_for
from pedidos.domain.order import new_order_id
from pedidos.v1 import orders_pb2, orders_pb2_grpc

pytestmark = pytest.mark.integration

WALK = [
    orders_pb2.ORDER_STATE_PROCESANDO,
    orders_pb2.ORDER_STATE_PREPARACION,
    orders_pb2.ORDER_STATE_ENVIADO,
    orders_pb2.ORDER_STATE_ENTREGADO,
    orders_pb2.ORDER_STATE_FINALIZADO,
]
FAST_STAGES: dict[str, Any] = {"STAGE_DELAY_MIN_S": 0.2, "STAGE_DELAY_MAX_S": 0.5}
# Not an order id: WatchOrder refuses it at once, and its "watch ended" log line still reports
# how many watches the producer holds.
PROBE_ID = "sonda"


def stub(address: str) -> orders_pb2_grpc.OrderServiceStub:
    return orders_pb2_grpc.OrderServiceStub(producer_channel(address))


def start_pipeline(services: Services, **stages: float) -> tuple[str, ServiceProcess]:
    producer = services.producer()
    overrides: dict[str, Any] = dict(stages or FAST_STAGES)
    services.consumer(**overrides)
    producer.wait_log("state feed assigned", timeout=60)
    return services.env["PRODUCER_ADDRESS"], producer


def get_or_none(client: orders_pb2_grpc.OrderServiceStub, order_id: str) -> orders_pb2.Order | None:
    try:
        return client.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=5)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def watch(
    client: orders_pb2_grpc.OrderServiceStub, order_id: str, timeout: float = 60
) -> list[orders_pb2.OrderStateChange]:
    return list(client.WatchOrder(orders_pb2.WatchOrderRequest(order_id=order_id), timeout=timeout))


def watch_log(producer: ServiceProcess, order_id: str | None = None) -> list[dict[str, object]]:
    """The producer's "watch ended" lines: of one order id, or of every watch but probes."""
    lines = [json.loads(line) for line in producer.log().splitlines() if line.startswith("{")]
    return [
        line
        for line in lines
        if line.get("message") == "watch ended"
        and (line.get("order_id") == order_id if order_id else line.get("order_id") != PROBE_ID)
    ]


def registered_watchers(client: orders_pb2_grpc.OrderServiceStub, producer: ServiceProcess) -> int:
    """How many watches the producer holds, as the log line of a probe watch reports it."""
    before = len(watch_log(producer, PROBE_ID))
    with pytest.raises(grpc.RpcError):  # INVALID_ARGUMENT at once, by design
        watch(client, PROBE_ID, timeout=5)
    wait_for(lambda: len(watch_log(producer, PROBE_ID)) > before, 10, "the probe's log line")
    return int(watch_log(producer, PROBE_ID)[-1]["watchers"])  # type: ignore[call-overload]


def registry_empty_after(producer: ServiceProcess, ended: int) -> bool:
    log = watch_log(producer)
    return len(log) >= ended and log[-1]["watchers"] == 0


def test_get_order_shows_an_order_in_flight_then_finished(services: Services) -> None:
    # Stages of at least 0.5 s: the order is certainly seen before it finishes.
    address, _ = start_pipeline(services, STAGE_DELAY_MIN_S=0.5, STAGE_DELAY_MAX_S=0.8)
    client = stub(address)
    request = order_request()
    created = client.CreateOrder(request, timeout=10)

    first = wait_for(lambda: get_or_none(client, created.order_id), 30, "order known")
    assert first.order_id == created.order_id
    assert first.state in WALK[:-1]
    accepted_at = created.accepted_at.ToDatetime()
    # Microseconds from the feed, milliseconds from the index: either is the same instant.
    assert abs((first.accepted_at.ToDatetime() - accepted_at).total_seconds()) < 0.001
    assert first.details == request.order
    assert [r.state for r in first.reached] == WALK[: len(first.reached)]
    assert first.reached[-1].state == first.state

    done = wait_for(
        lambda: (
            (o := get_or_none(client, created.order_id))
            and o.state == orders_pb2.ORDER_STATE_FINALIZADO
            and o
        ),
        60,
        "order finished",
    )
    assert [r.state for r in done.reached] == WALK
    stamps = [done.accepted_at.ToDatetime()] + [r.reached_at.ToDatetime() for r in done.reached]
    assert stamps == sorted(stamps)
    assert done.details == request.order


def test_watch_follows_an_order_in_flight_and_ends_after_finalizado(services: Services) -> None:
    address, producer = start_pipeline(services)
    client = stub(address)
    created = client.CreateOrder(order_request(), timeout=10)
    changes = watch(client, created.order_id)

    states = [c.state for c in changes]
    assert states == WALK[WALK.index(states[0]) :], "forward only, no gaps, ends at Finalizado"
    assert {c.order_id for c in changes} == {created.order_id}
    stamps = [c.reached_at.ToDatetime(tzinfo=UTC) for c in changes]
    assert stamps == sorted(stamps)
    # The timestamps are those of the stored order (which keeps milliseconds).
    stored = get_or_none(client, created.order_id)
    assert stored is not None
    by_state = {r.state: r.reached_at.ToDatetime(tzinfo=UTC) for r in stored.reached}
    for change, at in zip(changes, stamps, strict=True):
        assert abs((by_state[change.state] - at).total_seconds()) < 0.001

    # A finished order: its final state at once, then the stream ends.
    again = watch(client, created.order_id, timeout=10)
    assert [c.state for c in again] == [orders_pb2.ORDER_STATE_FINALIZADO]
    final_at = again[0].reached_at.ToDatetime(tzinfo=UTC)
    assert abs((final_at - stamps[-1]).total_seconds()) < 0.001
    wait_for(lambda: registry_empty_after(producer, 2), 10, "watch registry empty")


def test_unknown_and_malformed_ids(services: Services) -> None:
    address, producer = start_pipeline(services)
    client = stub(address)
    unknown = str(uuid.uuid4())
    for call in (
        lambda: client.GetOrder(orders_pb2.GetOrderRequest(order_id=unknown), timeout=5),
        # An unknown order is waited for until shortly before the deadline, then NOT_FOUND.
        lambda: watch(client, unknown, timeout=1.5),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert unknown in (caught.value.details() or "")

    for bad in ("", "42", "not-a-uuid", unknown + "0"):
        for call in (
            lambda bad=bad: client.GetOrder(orders_pb2.GetOrderRequest(order_id=bad), timeout=5),
            lambda bad=bad: watch(client, bad, timeout=5),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (caught.value.details() or "").startswith("order_id")
    wait_for(lambda: registry_empty_after(producer, 5), 10, "watch registry empty")


def test_two_hundred_watchers_see_all_five_states_of_their_orders(services: Services) -> None:
    address, producer = start_pipeline(services)
    email = "seguimiento@example.cl"
    requests = [
        order_request(key=f"watch-{i}-{uuid.uuid4()}", customer_email=email) for i in range(200)
    ]
    # Idempotency keys fix the ids, so every watcher is in place before its order exists.
    secret = services.env["ORDER_ID_SECRET"].encode()
    ids = [new_order_id(email, r.idempotency_key, secret) for r in requests]
    probe_client = stub(address)

    async def scenario() -> tuple[dict[str, list[int]], list[str]]:
        async with aio_producer_channel(address) as channel:
            client = orders_pb2_grpc.OrderServiceStub(channel)

            async def follow(order_id: str) -> list[int]:
                call = client.WatchOrder(
                    orders_pb2.WatchOrderRequest(order_id=order_id), timeout=90
                )
                return [change.state async for change in call]

            watchers = [asyncio.create_task(follow(order_id)) for order_id in ids]
            await asyncio.to_thread(
                wait_for,
                lambda: registered_watchers(probe_client, producer) == len(ids),
                30,
                "every watcher registered",
                0.2,
            )
            report = await send_stream(channel, requests, window=200, timeout_s=30)
            seen = await asyncio.gather(*watchers)
            return dict(zip(ids, seen, strict=True)), report.order_ids()

    seen, accepted = asyncio.run(scenario())
    assert accepted == ids
    assert all(states == WALK for states in seen.values()), {
        i: s for i, s in seen.items() if s != WALK
    }
    wait_for(lambda: registry_empty_after(producer, 200), 10, "watch registry empty")


def test_a_watcher_that_disconnects_is_unregistered(services: Services) -> None:
    address, producer = start_pipeline(services, STAGE_DELAY_MIN_S=1, STAGE_DELAY_MAX_S=2)
    client = stub(address)
    created = client.CreateOrder(order_request(), timeout=10)

    # One leaves after the first change of an order in flight, one while an unknown id is waited
    # for, one by its deadline.
    in_flight = client.WatchOrder(orders_pb2.WatchOrderRequest(order_id=created.order_id))
    next(in_flight)
    waiting = client.WatchOrder(orders_pb2.WatchOrderRequest(order_id=str(uuid.uuid4())))
    wait_for(lambda: registered_watchers(client, producer) == 2, 10, "the unknown id's watch")
    expiring = client.WatchOrder(
        orders_pb2.WatchOrderRequest(order_id=created.order_id), timeout=1.5
    )
    next(expiring)
    in_flight.cancel()
    waiting.cancel()
    with pytest.raises(grpc.RpcError) as caught:
        list(expiring)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    wait_for(lambda: registry_empty_after(producer, 3), 10, "watch registry empty")
    assert [line["outcome"] for line in watch_log(producer)] == ["cancelled"] * 3


def test_store_down_gives_unavailable(services: Services) -> None:
    services.producer(ELASTICSEARCH_URL=f"http://127.0.0.1:{free_port()}")
    client = stub(services.env["PRODUCER_ADDRESS"])
    order_id = str(uuid.uuid4())
    for call in (
        lambda: client.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id), timeout=5),
        lambda: watch(client, order_id, timeout=5),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "order store unavailable" in (caught.value.details() or "")


def test_sigterm_ends_watches_with_unavailable(services: Services) -> None:
    address, producer = start_pipeline(services, STAGE_DELAY_MIN_S=2, STAGE_DELAY_MAX_S=3)
    client = stub(address)
    created = client.CreateOrder(order_request(), timeout=10)
    call = client.WatchOrder(orders_pb2.WatchOrderRequest(order_id=created.order_id), timeout=60)
    assert next(call).state == orders_pb2.ORDER_STATE_PROCESANDO
    producer.signal(signal.SIGTERM)
    with pytest.raises(grpc.RpcError) as caught:
        list(call)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert producer.process is not None
    assert producer.process.wait(20) == 0
