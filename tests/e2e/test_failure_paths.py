"""Failure paths the README promises, through real consumer processes on the embedded stack:
records that can never be processed, Kafka refusing the consumer's writes, an order published
twice."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from elasticsearch import Elasticsearch

from devkit.credentials import producer_channel
from devkit.inbox import STATE_SLUGS, Inbox
from devkit.indices import search_docs
from devkit.net import free_port
from devkit.orders import make_details, order_request
from devkit.processes import Services
from devkit.stack import EmbeddedStack
from devkit.topics import publish_order_records, read_topic, topic_size
from devkit.waiting import wait_for
from pedidos.domain.order import Order, utc_now
from pedidos.domain.states import OrderState
from pedidos.v1 import orders_pb2_grpc
from pedidos.wire.records import STATE_SCHEMA, encode_order_accepted, header_value, headers_for
from pedidos.wire.search_documents import iso
from tests.e2e.test_pipeline import assert_documents, wait_all_emails

pytestmark = pytest.mark.e2e


def order_record(**changes: Any) -> tuple[str, dict[str, Any]]:
    """A valid `pedidos.order` record as JSON data, with `changes` applied to its order."""
    order = Order(str(uuid.uuid4()), make_details(), utc_now())
    data = orjson.loads(encode_order_accepted(order))
    data["order"].update(changes)
    return order.order_id, data


def state_record(reached: list[OrderState]) -> tuple[str, dict[str, Any]]:
    """A `pedidos.state` record of an order that went through `reached` (legal or not)."""
    order_id, data = order_record()
    now = utc_now().isoformat()
    data.update(
        schema=STATE_SCHEMA,
        state=reached[-1].value,
        stage_ends_at=now,
        email_status="sent",
        reached={state.value: now for state in reached},
    )
    return order_id, data


def produce(bootstrap: str, topic: str, records: list[tuple[str, dict[str, Any]]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for order_id, data in records:
        schema = data["schema"]
        producer.produce(
            topic,
            key=order_id.encode(),
            value=json.dumps(data).encode(),
            headers=[*headers_for(schema, order_id)],
        )
    assert producer.flush(30) == 0


def test_records_that_can_never_be_processed_are_dead_lettered_with_their_reason(
    services: Services, stack: EmbeddedStack
) -> None:
    env = services.env
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    consumer = services.consumer()
    invalid_order = order_record(customer_email="no-es-un-correo")
    skipped_state = state_record([OrderState.PROCESANDO, OrderState.ENVIADO])
    # A bug's stand-in, caused for real: a ledger entry for the step that lacks a field the
    # workflow reads. Nothing anticipates it, so it reaches the consumer's last-resort handler.
    corrupt_ledger = order_record()
    es = Elasticsearch(env["ELASTICSEARCH_URL"])
    try:
        es.create(
            index=env["ELASTICSEARCH_EVENTS_INDEX"],
            id=f"{corrupt_ledger[0]}:Procesando",
            document={
                "order_id": corrupt_ledger[0],
                "@timestamp": iso(utc_now()),
                "accepted_at": iso(utc_now()),
            },
            refresh=True,
        )
    finally:
        es.close()
    produce(bootstrap, env["PEDIDOS_TOPIC"], [invalid_order, corrupt_ledger])
    produce(bootstrap, env["PEDIDOS_STATES_TOPIC"], [skipped_state])
    dead = read_topic(bootstrap, env["PEDIDOS_DEAD_LETTER_TOPIC"], 3, timeout=60)
    # The pipeline goes on: orders sent after them complete.
    order_ids = publish_order_records(bootstrap, env["PEDIDOS_TOPIC"], 3)
    wait_all_emails(Inbox(stack.maildir), order_ids)
    assert_documents(env, order_ids)

    by_key = {key.decode(): (value, headers) for key, value, headers in dead if key}
    expected = {
        invalid_order[0]: (
            env["PEDIDOS_TOPIC"],
            "PoisonRecord: invalid order: customer_email: is not a valid e-mail address",
        ),
        skipped_state[0]: (
            env["PEDIDOS_STATES_TOPIC"],
            "PoisonRecord: illegal transition Procesando → Enviado",
        ),
        corrupt_ledger[0]: (env["PEDIDOS_TOPIC"], "KeyError: 'email_status'"),
    }
    assert set(by_key) == set(expected), dead
    for order_id, (topic, reason) in expected.items():
        value, headers = by_key[order_id]
        assert header_value(headers, "pedidos-dlq-kind") == "record"
        assert (header_value(headers, "pedidos-error") or "").startswith(reason)
        assert (header_value(headers, "pedidos-source") or "").startswith(f"{topic}/")
        assert value is not None
        assert json.loads(value)["order_id"] == order_id  # the record itself, for a replay
    log = consumer.log()
    assert log.count("unexpected error; record dead-lettered") == 1
    assert log.count('"message":"record dead-lettered"') == 2
    assert consumer.running


def set_topic_config(bootstrap: str, topics: list[str], name: str, value: str | None) -> None:
    """Sets (or, with None, removes) one config of `topics` on the broker."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    operation = AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET
    resources = [
        ConfigResource(
            ConfigResource.Type.TOPIC,
            topic,
            incremental_configs=[ConfigEntry(name, value or "", incremental_operation=operation)],
        )
        for topic in topics
    ]
    for future in admin.incremental_alter_configs(resources).values():
        future.result(30)


def test_writes_kafka_refuses_for_a_while_are_retried_not_skipped(
    services: Services, stack: EmbeddedStack
) -> None:
    """The state and dead-letter topics refuse every record (`max.message.bytes` set below any
    record: MESSAGE_TOO_LARGE from the broker) until an operator fixes the setting.

    A refusal that only time cures (NOT_ENOUGH_REPLICAS through `min.insync.replicas`) cannot
    be caused here: Apache Kafka 4.1 ignores that setting per topic (eligible leader replicas),
    and cluster-wide it would also stop the group's offset commits.
    """
    if stack.broker.name != "apache":
        pytest.skip("changes topic configs: needs Apache Kafka")
    env = services.env
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    refusing = [env["PEDIDOS_STATES_TOPIC"], env["PEDIDOS_DEAD_LETTER_TOPIC"]]
    consumer = services.consumer()
    inbox = Inbox(stack.maildir)
    set_topic_config(bootstrap, refusing, "max.message.bytes", "64")
    try:
        order_ids = publish_order_records(bootstrap, env["PEDIDOS_TOPIC"], 5)
        produce_garbage = Producer({"bootstrap.servers": bootstrap})
        produce_garbage.produce(env["PEDIDOS_TOPIC"], key=b"garbage", value=b"\x00no JSON")
        assert produce_garbage.flush(30) == 0
        # Several refusals each: the writes are retried, not given up after one.
        consumer.wait_log("publishing state failed", timeout=60, count=len(order_ids) * 2)
        consumer.wait_log("dead-letter publish failed", timeout=60, count=2)
        assert topic_size(bootstrap, env["PEDIDOS_STATES_TOPIC"]) == 0
        assert topic_size(bootstrap, env["PEDIDOS_DEAD_LETTER_TOPIC"]) == 0
        # Each order is held at its first step, e-mailed once, until its state is recorded.
        wait_for(
            lambda: inbox.states_by_order(order_ids) == {o: ["procesando"] for o in order_ids},
            60,
            "every order to be e-mailed for its first step only",
        )
        assert topic_size(bootstrap, env["PEDIDOS_STATES_TOPIC"]) == 0
    finally:
        set_topic_config(bootstrap, refusing, "max.message.bytes", None)
    wait_all_emails(inbox, order_ids, timeout=120)
    assert_documents(env, order_ids)
    states = read_topic(bootstrap, env["PEDIDOS_STATES_TOPIC"], 25, timeout=60)
    recorded = Counter(
        (json.loads(value or b"{}")["order_id"], json.loads(value or b"{}")["state"])
        for _, value, _ in states
    )
    # Every state of every order recorded, none skipped and none twice.
    assert recorded == {(o, s.value): 1 for o in order_ids for s in OrderState}
    assert all(inbox.states_by_order(order_ids)[o] == STATE_SLUGS for o in order_ids)
    dead = read_topic(bootstrap, env["PEDIDOS_DEAD_LETTER_TOPIC"], 1)
    assert [key for key, _, _ in dead] == [b"garbage"]
    assert "Message size too large" in consumer.log()
    assert consumer.running


def test_an_order_published_twice_is_still_one_order(
    services: Services, stack: EmbeddedStack
) -> None:
    """Two producer replicas take the same retried request (same customer and key): both
    publish it. Once the consumer sees both records together; once the second arrives after a
    consumer restart, when only Elasticsearch remembers the order's steps."""
    env = services.env
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    replicas = []
    for _ in range(2):
        listen = f"127.0.0.1:{free_port()}"
        services.producer(GRPC_LISTEN=listen)
        replicas.append(orders_pb2_grpc.OrderServiceStub(producer_channel(listen)))
    together, after_restart = order_request(), order_request()
    consumer = services.consumer()
    twins = {replica.CreateOrder(together, timeout=10).order_id for replica in replicas}
    late = replicas[0].CreateOrder(after_restart, timeout=10).order_id
    (twin,) = twins
    order_ids = [twin, late]
    inbox = Inbox(stack.maildir)
    wait_all_emails(inbox, order_ids)
    assert consumer.stop() == 0
    assert replicas[1].CreateOrder(after_restart, timeout=10).order_id == late
    published = read_topic(bootstrap, env["PEDIDOS_TOPIC"], 4)
    assert Counter(key.decode() for key, _, _ in published if key) == {twin: 2, late: 2}
    restarted = services.consumer()
    # The late copy walks every state again (its steps found in the ledger) to the end.
    wait_for(
        lambda: any(
            late in line and "Finalizado" in line and "order state reached" in line
            for line in restarted.log().splitlines()
        ),
        90,
        "the late copy to walk to Finalizado",
    )
    states = read_topic(bootstrap, env["PEDIDOS_STATES_TOPIC"], 15)
    walked = Counter(json.loads(value or b"{}")["order_id"] for _, value, _ in states)
    assert walked == {twin: 5, late: 10}
    # Exactly 5 e-mails and 5 + 1 documents for each.
    states_by_order = inbox.states_by_order(order_ids)
    assert all(states_by_order[o] == STATE_SLUGS for o in order_ids), states_by_order
    assert_documents(env, order_ids)
    # The late copy carries its own acceptance time; the order keeps the first one.
    events = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_EVENTS_INDEX"], [late])
    (current,) = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_ORDERS_INDEX"], [late])
    assert {d["accepted_at"] for d in events} == {current["accepted_at"]}
