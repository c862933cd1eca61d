"""10,000 random and hostile CreateOrder requests against a real producer.

Each one is rejected with INVALID_ARGUMENT or accepted; the server stays up; only the accepted
ones are published."""

from __future__ import annotations

import asyncio
import json
import random
import string

import grpc
import pytest

from devkit.credentials import aio_producer_channel, producer_channel
from devkit.net import producer_healthy
from devkit.orders import order_request
from devkit.processes import Services
from devkit.topics import read_topic
from pedidos.v1 import orders_pb2, orders_pb2_grpc

pytestmark = pytest.mark.integration

FUZZ_REQUESTS = 10_000
HOSTILE = [
    "<script>alert(1)</script>",
    "a@b.c\r\nBcc: x@y.z",
    "\x00\x01\x1b[31m",
    "\u202e\u200b",
    "Ω≈ç√∫˜µ≤≥÷",
    "🛒🧾",
    "' OR 1=1 --",
    "${jndi:ldap://x}",
    "../../etc/passwd",
    "=?utf-8?b?SGk=?=\r\n",
]
INT64 = (-(2**63), 2**63 - 1)


def hostile_text(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return ""
    if kind == 1:
        return rng.choice(HOSTILE)
    if kind == 2:
        return "".join(rng.choice(HOSTILE) for _ in range(rng.randrange(1, 5)))
    if kind == 3:
        return "x" * rng.choice([199, 200, 201, 5_000, 100_000])
    if kind == 4:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(1, 40)))
    return "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 60)))


def hostile_request(rng: random.Random) -> tuple[orders_pb2.CreateOrderRequest, set[str]]:
    """A request with random fields mutated, and the names (as rejections give them) of those."""
    request = order_request(key="" if rng.random() < 0.3 else f"fuzz-{rng.getrandbits(64)}")
    details = request.order
    mutated: set[str] = set()
    for field in ("product_name", "bank", "shipping_region", "shipping_address"):
        if rng.random() < 0.4:
            setattr(details, field, hostile_text(rng))
            mutated.add(field)
    if rng.random() < 0.4:
        details.customer_email = rng.choice(
            [
                hostile_text(rng),
                f"{hostile_text(rng)}@example.cl",
                "a@b.c\r\nBcc: x@y.z",
                "x@[127.0.0.1]",
            ]
        )
        mutated.add("customer_email")
    if rng.random() < 0.4:
        details.price.amount_minor = rng.choice(
            [*INT64, 0, -1, 1, 100_000_000, 100_000_001, rng.randrange(*INT64)]
        )
        mutated.add("price.amount_minor")
    if rng.random() < 0.2:
        details.price.currency_code = rng.choice(
            ["", "CLP", "USD", "clp", "XXX", hostile_text(rng)[:10]]
        )
        mutated.add("price.currency_code")
    if rng.random() < 0.2:
        details.payment_gateway = rng.randrange(-5, 10)  # type: ignore[assignment]
        mutated.add("payment_gateway")
    if rng.random() < 0.2:
        details.card_brand = rng.randrange(-5, 10)  # type: ignore[assignment]
        mutated.add("card_brand")
    return request, mutated


async def fire(
    address: str, requests: list[orders_pb2.CreateOrderRequest]
) -> list[tuple[grpc.StatusCode, str]]:
    async with aio_producer_channel(address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        limit = asyncio.Semaphore(32)

        async def one(request: orders_pb2.CreateOrderRequest) -> tuple[grpc.StatusCode, str]:
            async with limit:
                try:
                    reply = await stub.CreateOrder(request, timeout=20)
                    return grpc.StatusCode.OK, reply.order_id
                except grpc.aio.AioRpcError as exc:
                    return exc.code(), exc.details() or ""

        return await asyncio.gather(*(one(r) for r in requests))


def test_fuzzed_requests_are_rejected_cleanly_or_accepted_and_published(services: Services) -> None:
    services.producer()
    env = services.env
    rng = random.Random(20261123)
    requests, mutations = zip(*(hostile_request(rng) for _ in range(FUZZ_REQUESTS)), strict=True)
    outcomes = asyncio.run(fire(env["PRODUCER_ADDRESS"], list(requests)))

    codes = {code for code, _ in outcomes}
    assert codes <= {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
    }
    accepted = {detail for code, detail in outcomes if code == grpc.StatusCode.OK}
    rejected = [detail for code, detail in outcomes if code == grpc.StatusCode.INVALID_ARGUMENT]
    assert len(rejected) > FUZZ_REQUESTS // 4, "the fuzz must exercise the rejection path"
    assert len(accepted) > 100, "the fuzz must exercise the acceptance path"
    # Every rejection names a field this request mutated; a request left intact is accepted.
    misnamed = [
        (sorted(mutated), detail)
        for (code, detail), mutated in zip(outcomes, mutations, strict=True)
        if code == grpc.StatusCode.INVALID_ARGUMENT and detail.split(":", 1)[0] not in mutated
    ]
    assert not misnamed, misnamed[:5]
    intact = [code for (code, _), mutated in zip(outcomes, mutations, strict=True) if not mutated]
    assert intact, "the fuzz must send some intact requests"
    assert set(intact) == {grpc.StatusCode.OK}
    assert producer_healthy(env["PRODUCER_ADDRESS"])

    records = read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], len(accepted), timeout=60
    )
    published = {key.decode() for key, _, _ in records if key}
    assert published == accepted
    for _, value, _ in records:
        order = json.loads(value or b"")["order"]
        assert all(ch.isprintable() for ch in order["product_name"] + order["shipping_address"])
        assert not set(order["customer_email"]) & {"\r", "\n"}


def test_an_oversized_request_is_refused_and_the_server_stays_up(services: Services) -> None:
    services.producer()
    address = services.env["PRODUCER_ADDRESS"]
    stub = orders_pb2_grpc.OrderServiceStub(producer_channel(address))
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateOrder(order_request(product_name="x" * (2 * 1024 * 1024)), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.CreateOrder(order_request(), timeout=10).order_id
    assert producer_healthy(address)
