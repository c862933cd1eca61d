"""The whole pipeline on the embedded stack: producer → Kafka → consumer → SMTP + Elasticsearch."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from devkit.credentials import producer_channel
from devkit.inbox import STATE_SLUGS, Inbox
from devkit.indices import search_docs
from devkit.orders import order_request
from devkit.processes import ServiceProcess, Services
from devkit.stack import EmbeddedStack
from devkit.topics import read_topic
from devkit.waiting import WaitTimeout, wait_for
from pedidos.adapters.kafka.lag import COORDINATOR_STARTING
from pedidos.v1 import orders_pb2_grpc
from pedidos.wire.records import header_value
from tests.conftest import REJECTED_DOMAIN

pytestmark = pytest.mark.e2e


def send_orders(address: str, count: int, email: str = "comprador@example.cl") -> list[str]:
    client = orders_pb2_grpc.OrderServiceStub(producer_channel(address))
    return [
        client.CreateOrder(order_request(customer_email=email), timeout=10).order_id
        for _ in range(count)
    ]


def wait_all_emails(
    inbox: Inbox, order_ids: list[str], timeout: float = 90
) -> dict[str, list[str]]:
    def complete() -> dict[str, list[str]] | None:
        states = inbox.states_by_order(order_ids)
        return states if all(len(states.get(o, [])) >= 5 for o in order_ids) else None

    return wait_for(complete, timeout, f"5 e-mails for each of {len(order_ids)} orders", 0.5)


def wait_all_consumed(env: dict[str, str], timeout: float = 60) -> None:
    """Until the consumer group has committed every record of `Pedidos` and `Pedidos.estados`.

    A record is committed only once its step is done (its e-mail sent, its documents written,
    the next state published), so then no step is running or left to run: an e-mail that has
    not arrived will not. Committed offsets are read before end offsets, so a step still
    running, or a record published meanwhile, keeps the two apart.

    Fails once `timeout` s pass without a commit: a slow machine is waited for, a stalled group
    is not, and the error names the partitions left behind (committed, end).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"],
            "group.id": env["KAFKA_CONSUMER_GROUP"],  # only read, never joined
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in (env["PEDIDOS_TOPIC"], env["PEDIDOS_STATES_TOPIC"])
            for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        last_done, last_commit = -1, time.monotonic()
        while True:
            try:
                committed = consumer.committed(partitions, timeout=10)
                ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
            except KafkaException as exc:
                # A group just created has no coordinator for a moment.
                if exc.args[0].code() not in COORDINATOR_STARTING:
                    raise
                time.sleep(0.2)
                continue
            behind = {
                f"{c.topic}[{c.partition}]": (max(c.offset, 0), end)
                for c, end in zip(committed, ends, strict=True)
                if max(c.offset, 0) != end
            }
            if not behind:
                return
            done = sum(max(c.offset, 0) for c in committed)
            if done != last_done:
                last_done, last_commit = done, time.monotonic()
            elif time.monotonic() - last_commit > timeout:
                raise WaitTimeout(
                    f"no commit for {timeout:.0f}s while the consumer group was behind on "
                    f"(committed, end): {behind}"
                )
            time.sleep(0.2)
    finally:
        consumer.close()


def partition_owners(*processes: ServiceProcess) -> dict[int, set[str]]:
    """The partitions each consumer process (by pid) holds now, from its rebalance log lines."""
    owners: dict[int, set[str]] = {}
    for process in processes:
        for line in process.log().splitlines():
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            held = owners.setdefault(entry["pid"], set())
            if entry.get("message") == "partitions assigned":
                held.update(entry["partitions"])
            elif entry.get("message") == "partitions revoked":
                held.difference_update(entry["partitions"])
    return owners


def wait_partitions_shared(
    env: dict[str, str], *processes: ServiceProcess, members: int = 2
) -> None:
    """Until `members` consumer processes each hold a share and together every partition."""
    every = {
        f"{topic}-{partition}"
        for topic in (env["PEDIDOS_TOPIC"], env["PEDIDOS_STATES_TOPIC"])
        for partition in range(int(env["KAFKA_TOPIC_PARTITIONS"]))
    }

    def shared() -> bool:
        shares = [held for held in partition_owners(*processes).values() if held]
        return (
            len(shares) == members
            and sum(map(len, shares)) == len(every)
            and set().union(*shares) == every
        )

    wait_for(shared, 60, f"{members} consumers to share every partition", 0.2)


def assert_documents(env: dict[str, str], order_ids: list[str]) -> None:
    def settled() -> bool:
        orders = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_ORDERS_INDEX"], order_ids)
        return len(orders) == len(order_ids) and all(d["state"] == "Finalizado" for d in orders)

    wait_for(settled, 30, "every current document to say Finalizado", 0.5)
    events = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_EVENTS_INDEX"], order_ids)
    per_order = Counter(d["order_id"] for d in events)
    assert per_order == dict.fromkeys(order_ids, 5)
    assert {d["_id"] for d in events} == {
        f"{o}:{s}"
        for o in order_ids
        for s in ("Procesando", "Preparación", "Enviado", "Entregado", "Finalizado")
    }
    orders = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_ORDERS_INDEX"], order_ids)
    assert all(set(d["reached_at"]) == set(STATE_SLUGS) for d in orders)


def test_every_order_gets_five_emails_in_order_and_its_documents(
    services: Services, stack: EmbeddedStack
) -> None:
    services.producer()
    services.consumer()
    order_ids = send_orders(services.env["PRODUCER_ADDRESS"], 20)
    inbox = Inbox(stack.maildir)
    wait_all_emails(inbox, order_ids)
    wait_all_consumed(services.env)  # anything extra would have arrived by now
    states = inbox.states_by_order(order_ids)
    assert all(states[o] == STATE_SLUGS for o in order_ids), states
    assert_documents(services.env, order_ids)


def test_two_consumers_in_one_group_share_the_work_without_duplicates(
    services: Services, stack: EmbeddedStack
) -> None:
    services.producer()
    first = services.consumer()
    second = services.consumer(wait_assigned=False)
    # Wait for the rebalance that gives the second member its share.
    wait_partitions_shared(services.env, first, second)
    order_ids = send_orders(services.env["PRODUCER_ADDRESS"], 40)
    inbox = Inbox(stack.maildir)
    wait_all_emails(inbox, order_ids)
    wait_all_consumed(services.env)
    states = inbox.states_by_order(order_ids)
    assert all(states[o] == STATE_SLUGS for o in order_ids)
    assert first.log().count("order state reached") > 0
    assert second.log().count("order state reached") > 0
    assert_documents(services.env, order_ids)


def test_a_consumer_killed_mid_run_resumes_every_order(
    services: Services, stack: EmbeddedStack
) -> None:
    services.producer()
    consumer = services.consumer(STAGE_DELAY_MIN_S=1.0, STAGE_DELAY_MAX_S=2.0)
    order_ids = send_orders(services.env["PRODUCER_ADDRESS"], 40)
    inbox = Inbox(stack.maildir)
    wait_for(
        lambda: sum(map(len, inbox.states_by_order(order_ids).values())) >= 60, 60, "some progress"
    )
    consumer.kill()  # SIGKILL: no cleanup, no commit
    before = inbox.states_by_order(order_ids)
    assert sum(map(len, before.values())) < 200, "the kill came too late to prove anything"
    services.consumer(STAGE_DELAY_MIN_S=1.0, STAGE_DELAY_MAX_S=2.0)
    states = wait_all_emails(inbox, order_ids)
    wait_all_consumed(services.env)
    states = inbox.states_by_order(order_ids)
    for order_id in order_ids:
        # Every state reached, in order; a kill may repeat the e-mail that was in flight.
        assert list(dict.fromkeys(states[order_id])) == STATE_SLUGS
    duplicates = sum(len(s) - 5 for s in states.values())
    print(f"duplicate e-mails after one SIGKILL: {duplicates}")
    assert duplicates <= 10
    assert_documents(services.env, order_ids)


def test_an_smtp_outage_delays_emails_but_loses_none(
    services: Services, stack: EmbeddedStack
) -> None:
    services.producer()
    consumer = services.consumer()
    stack.stop("smtp")
    try:
        order_ids = send_orders(services.env["PRODUCER_ADDRESS"], 10)
        consumer.wait_log("sending e-mail failed", timeout=30)
        time.sleep(3)  # the outage's length, not a wait: e-mails are retried all along it
    finally:
        stack.start("smtp")
    assert consumer.running
    inbox = Inbox(stack.maildir)
    wait_all_emails(inbox, order_ids, timeout=120)
    wait_all_consumed(services.env)
    states = inbox.states_by_order(order_ids)
    assert all(states[o] == STATE_SLUGS for o in order_ids)
    assert_documents(services.env, order_ids)


def test_garbage_on_the_topic_is_dead_lettered_and_the_rest_flows(
    services: Services, stack: EmbeddedStack
) -> None:
    services.producer()
    services.consumer()
    env = services.env
    raw = Producer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    raw.produce(env["PEDIDOS_TOPIC"], key=b"garbage", value=b"\x00not json at all")
    raw.produce(
        env["PEDIDOS_TOPIC"], key=b"wrong-version", value=b'{"schema":"pedidos.order","version":9}'
    )
    raw.flush(10)
    order_ids = send_orders(env["PRODUCER_ADDRESS"], 5)
    wait_all_emails(Inbox(stack.maildir), order_ids)
    dead = read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_DEAD_LETTER_TOPIC"], 2)
    by_key = {key: headers for key, _, headers in dead}
    assert set(by_key) == {b"garbage", b"wrong-version"}
    assert "not JSON" in (header_value(by_key[b"garbage"], "pedidos-error") or "")
    assert "unsupported pedidos.order version 9" in (
        header_value(by_key[b"wrong-version"], "pedidos-error") or ""
    )
    assert header_value(
        by_key[b"garbage"],
        "pedidos-source",
    ).startswith(env["PEDIDOS_TOPIC"] + "/")  # type: ignore[union-attr]
    assert_documents(env, order_ids)


def test_a_permanently_rejected_address_is_dead_lettered_and_the_order_completes(
    services: Services, stack: EmbeddedStack
) -> None:
    services.producer()
    services.consumer()
    env = services.env
    (order_id,) = send_orders(env["PRODUCER_ADDRESS"], 1, email=f"nadie@{REJECTED_DOMAIN}")
    dead = read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_DEAD_LETTER_TOPIC"], 5, timeout=60
    )
    assert len(dead) == 5
    assert all(header_value(h, "pedidos-dlq-kind") == "notification" for _, _, h in dead)
    assert all("550" in (header_value(h, "pedidos-error") or "") for _, _, h in dead)
    assert_documents(env, [order_id])
    events = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_EVENTS_INDEX"], [order_id])
    assert {d["email_status"] for d in events} == {"rejected"}
    assert Inbox(stack.maildir).states_by_order([order_id]) == {}


def test_sigterm_stops_the_consumer_gracefully_and_a_new_one_resumes_without_duplicates(
    services: Services, stack: EmbeddedStack
) -> None:
    services.producer()
    consumer = services.consumer(STAGE_DELAY_MIN_S=1.0, STAGE_DELAY_MAX_S=2.0)
    order_ids = send_orders(services.env["PRODUCER_ADDRESS"], 30)
    inbox = Inbox(stack.maildir)
    wait_for(
        lambda: sum(map(len, inbox.states_by_order(order_ids).values())) >= 40, 60, "some progress"
    )
    assert consumer.stop(timeout=30) == 0
    assert "consumer stopped" in consumer.log()
    done_before = sum(map(len, inbox.states_by_order(order_ids).values()))
    assert done_before < 150, "the stop came too late to prove anything"
    services.consumer(STAGE_DELAY_MIN_S=1.0, STAGE_DELAY_MAX_S=2.0)
    wait_all_emails(inbox, order_ids)
    wait_all_consumed(services.env)
    states = inbox.states_by_order(order_ids)
    # A graceful stop finishes or hands back its work: no e-mail is repeated.
    assert all(states[o] == STATE_SLUGS for o in order_ids)
    assert_documents(services.env, order_ids)
