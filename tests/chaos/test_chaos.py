"""Failure injection on the embedded stack, with exact counts at the end of every scenario.

`make chaos` runs each scenario with 2,000 orders; `make test` runs the same ones with 200.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from admin.stack import EmbeddedStack
from client.orders import random_requests
from client.sender import send_to_producer
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from pedidos.records import StateReached, encode_state_reached, header_value
from tests.chaos.conftest import ROWS, ChaosRow
from tests.conftest import Services
from tests.support import STATE_SLUGS, Inbox, TcpCutter, read_topic, search_docs, wait_for
from tests.unit.factories import make_details

# 2,000-order scenarios on 2 cores outlast the suite-wide 300 s timeout.
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

CHAOS_CONSUMER: dict[str, object] = {"STAGE_DELAY_MIN_S": 0.02, "STAGE_DELAY_MAX_S": 0.1}
# One unrecorded e-mail at a time per consumer: each SIGKILL can repeat at most one e-mail.
CHAOS_CONSUMER_SMTP = {"SMTP_CONNECTIONS": 1, "CONSUMER_MAX_UNRECORDED_EMAILS": 1}


@pytest.fixture
def orders(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--chaos-orders"))


def send(address: str, count: int, retries: int = 3) -> list[str]:
    report = asyncio.run(
        send_to_producer(
            address, random_requests(count, "cliente@example.cl", random.Random()), 32, 10, retries
        )
    )
    assert report.all_accepted, report
    return list(report.order_ids)


def progress(inbox: Inbox, order_ids: list[str]) -> int:
    return sum(map(len, inbox.states_by_order(order_ids).values()))


def wait_complete(inbox: Inbox, order_ids: list[str], timeout: float) -> float:
    started = time.monotonic()
    wait_for(
        lambda: (
            all(len(set(s)) == 5 for s in inbox.states_by_order(order_ids).values())
            and len(inbox.states_by_order(order_ids)) == len(order_ids)
        ),
        timeout,
        f"all 5 states e-mailed for {len(order_ids)} orders",
        0.5,
    )
    return time.monotonic() - started


def account(
    scenario: str,
    services: Services,
    stack: EmbeddedStack,
    order_ids: list[str],
    recovery_s: float,
    faults: int,
) -> ChaosRow:
    """Exact counts: orders missing a state, repeated e-mails, documents beyond one each."""
    env = services.env
    time.sleep(1.5)  # late duplicates, if any, arrive now
    states = Inbox(stack.maildir).states_by_order(order_ids)
    lost = sum(1 for o in order_ids if list(dict.fromkeys(states.get(o, []))) != STATE_SLUGS)
    duplicates = sum(len(s) for s in states.values()) - 5 * len(order_ids)

    def final_docs() -> list[dict]:
        return search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_ORDERS_INDEX"], order_ids)

    wait_for(
        lambda: sum(d["state"] == "Finalizado" for d in final_docs()) == len(order_ids),
        60,
        "Finalizado",
    )
    events = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_EVENTS_INDEX"], order_ids)
    per_order = Counter(d["order_id"] for d in events)
    lost_docs = sum(1 for o in order_ids if per_order.get(o) != 5)
    for order_id in [o for o in order_ids if per_order.get(o) != 5][:5]:
        present = sorted(d["state"] for d in events if d["order_id"] == order_id)
        print(f"incomplete: order {order_id} has event documents for {present}")
    duplicate_docs = (
        len(events) - len({d["_id"] for d in events}) + len(final_docs()) - len(order_ids)
    )
    row = ChaosRow(
        scenario, len(order_ids), lost + lost_docs, duplicates, duplicate_docs, recovery_s, faults
    )
    ROWS.append(row)
    print(row)
    return row


def test_consumer_sigkilled_three_times(
    services: Services, stack: EmbeddedStack, orders: int
) -> None:
    services.producer()
    consumer = services.consumer(**CHAOS_CONSUMER, **CHAOS_CONSUMER_SMTP)
    order_ids = send(services.env["PRODUCER_ADDRESS"], orders)
    inbox = Inbox(stack.maildir)
    rng = random.Random()
    kills = 0
    for fraction in sorted(rng.uniform(0.1, 0.8) for _ in range(3)):
        wait_for(
            lambda f=fraction: progress(inbox, order_ids) >= f * 5 * orders, 300, "progress", 0.2
        )
        consumer.kill()
        kills += 1
        consumer = services.consumer(**CHAOS_CONSUMER, **CHAOS_CONSUMER_SMTP)
    recovery = wait_complete(inbox, order_ids, 600)
    row = account("consumer SIGKILL x3", services, stack, order_ids, recovery, kills)
    assert row.lost == 0
    assert row.duplicate_docs == 0
    assert 0 <= row.duplicate_emails <= kills


def test_rebalance_with_a_member_killed_and_one_added(
    services: Services, stack: EmbeddedStack, orders: int
) -> None:
    services.producer()
    first = services.consumer(**CHAOS_CONSUMER, **CHAOS_CONSUMER_SMTP)
    second = services.consumer(wait_assigned=False, **CHAOS_CONSUMER, **CHAOS_CONSUMER_SMTP)
    second.wait_log("partitions assigned", timeout=60)
    order_ids = send(services.env["PRODUCER_ADDRESS"], orders)
    inbox = Inbox(stack.maildir)
    wait_for(lambda: progress(inbox, order_ids) >= 1.5 * orders, 300, "progress", 0.2)
    first.kill()
    third = services.consumer(wait_assigned=False, **CHAOS_CONSUMER, **CHAOS_CONSUMER_SMTP)
    third.wait_log("partitions assigned", timeout=60)
    # Orders sent after the new member joined land on its partitions too, so it must take part.
    order_ids += send(services.env["PRODUCER_ADDRESS"], max(30, orders // 10))
    recovery = wait_complete(inbox, order_ids, 600)
    row = account("2 consumers, 1 killed, 1 added", services, stack, order_ids, recovery, 1)
    assert row.lost == 0
    assert row.duplicate_docs == 0
    assert row.duplicate_emails <= 1
    assert "order state reached" in third.log()


def test_smtp_down_for_a_while(services: Services, stack: EmbeddedStack, orders: int) -> None:
    outage_s = 20 if orders >= 1000 else 5
    services.producer()
    consumer = services.consumer(**CHAOS_CONSUMER, SMTP_CONNECTIONS=4)
    order_ids = send(services.env["PRODUCER_ADDRESS"], orders)
    inbox = Inbox(stack.maildir)
    wait_for(lambda: progress(inbox, order_ids) >= orders, 300, "progress", 0.2)
    stack.stop("smtp")
    time.sleep(outage_s)
    assert consumer.running
    stack.start("smtp")
    recovery = wait_complete(inbox, order_ids, 600)
    row = account(f"SMTP down {outage_s}s", services, stack, order_ids, recovery, 1)
    assert row.lost == 0
    assert row.duplicate_docs == 0
    # Stopping the server can cut a message after it was stored and before the 250 arrived.
    assert row.duplicate_emails <= 4
    assert "sending e-mail failed" in consumer.log()


def test_elasticsearch_down_for_a_while(
    services: Services, stack: EmbeddedStack, orders: int
) -> None:
    # The consumer reaches Elasticsearch through a cuttable proxy: restarting noida-db itself
    # would test noida (it drops writes it acknowledged during its own shutdown), not us.
    outage_s = 20 if orders >= 1000 else 5
    cutter = TcpCutter(stack.ports.elasticsearch)
    services.producer()
    # Stages long enough that the walks are still going when the cut comes: the consumer now
    # walks 200 orders with the chaos suite's short delays in about 2 s, so the outage could
    # miss every request.
    consumer = services.consumer(
        STAGE_DELAY_MIN_S=0.5,
        STAGE_DELAY_MAX_S=1.0,
        SMTP_CONNECTIONS=4,
        ELASTICSEARCH_URL=f"http://127.0.0.1:{cutter.port}",
    )
    order_ids = send(services.env["PRODUCER_ADDRESS"], orders)
    inbox = Inbox(stack.maildir)
    wait_for(lambda: progress(inbox, order_ids) >= orders, 300, "progress", 0.2)
    cutter.cut()
    time.sleep(outage_s)
    assert consumer.running
    cutter.restore()
    recovery = wait_complete(inbox, order_ids, 600)
    row = account(f"Elasticsearch down {outage_s}s", services, stack, order_ids, recovery, 1)
    assert row.lost == 0
    assert row.duplicate_docs == 0
    assert row.duplicate_emails == 0
    assert "elasticsearch" in consumer.log().lower()


def test_producer_sigkilled_while_clients_retry_with_keys(
    services: Services, stack: EmbeddedStack, orders: int
) -> None:
    producer = services.producer()
    services.consumer(**CHAOS_CONSUMER, **CHAOS_CONSUMER_SMTP)
    address = services.env["PRODUCER_ADDRESS"]
    order_ids: list[str] = []

    async def clients() -> None:
        report = await send_to_producer(
            address,
            random_requests(orders, "cliente@example.cl", random.Random()),
            16,
            5,
            retries=20,
        )
        assert report.all_accepted, report
        order_ids.extend(report.order_ids)

    async def killer() -> None:
        await asyncio.sleep(0.5)
        producer.signal(signal.SIGKILL)
        await asyncio.sleep(1)
        await asyncio.to_thread(services.producer)

    async def scenario() -> None:
        await asyncio.gather(clients(), killer())

    asyncio.run(scenario())
    assert len(set(order_ids)) == orders
    recovery = wait_complete(Inbox(stack.maildir), order_ids, 600)
    row = account("producer SIGKILL, clients retry", services, stack, order_ids, recovery, 1)
    assert row.lost == 0
    assert row.duplicate_docs == 0
    assert row.duplicate_emails == 0


def unknown_state_record() -> bytes:
    """A well-formed state record whose state is not part of the walk."""
    order = Order("9b2f7c0e-2a4f-4a55-9e2f-2b8d7c6a5e41", make_details(), datetime.now(UTC))
    order.enter(OrderState.PROCESANDO, order.accepted_at)
    event = StateReached(order, OrderState.PROCESANDO, order.accepted_at, "sent", "c")
    data = json.loads(encode_state_reached(event))
    return json.dumps({**data, "state": "Perdido"}).encode()


def test_poison_records_are_dead_lettered_and_the_pipeline_goes_on(
    services: Services, stack: EmbeddedStack, orders: int
) -> None:
    services.producer()
    services.consumer(**CHAOS_CONSUMER, **CHAOS_CONSUMER_SMTP)
    env = services.env
    poison = {
        b"not-json": b"\x00\xff garbage",
        b"wrong-schema": b'{"schema":"pedidos.refund","version":1}',
        b"wrong-version": b'{"schema":"pedidos.order","version":7}',
        b"unknown-state": unknown_state_record(),
        b"huge": b'{"schema":"pedidos.order","version":1,"pad":"' + b"x" * 200_000 + b'"}',
    }
    raw = Producer(
        {"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"], "message.max.bytes": 1_000_000}
    )
    for key, value in poison.items():
        topic = env["PEDIDOS_STATES_TOPIC"] if key == b"unknown-state" else env["PEDIDOS_TOPIC"]
        raw.produce(topic, key=key, value=value)
    raw.flush(10)
    order_ids = send(env["PRODUCER_ADDRESS"], orders)
    recovery = wait_complete(Inbox(stack.maildir), order_ids, 600)
    dead = read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_DEAD_LETTER_TOPIC"], len(poison), timeout=60
    )
    reasons = {key: header_value(headers, "pedidos-error") or "" for key, _, headers in dead}
    assert set(reasons) == set(poison)
    assert "not JSON" in reasons[b"not-json"]
    assert "unknown schema" in reasons[b"wrong-schema"]
    assert "unsupported" in reasons[b"wrong-version"]
    assert "unknown order state 'Perdido'" in reasons[b"unknown-state"]
    assert "exceeds" in reasons[b"huge"]
    row = account("poison records", services, stack, order_ids, recovery, len(poison))
    assert row.lost == 0
    assert row.duplicate_emails == 0
