"""Dead letters replayed end to end: real producer and consumer processes, `python -m admin dlq`.

Two batches go wrong for a reason that is then fixed: e-mails to a domain the mail server does
not accept yet (`notification` dead letters), and orders whose current-state document an index
created by hand refuses (`record` dead letters). After the fix, `dlq replay` completes every
order with exactly its 5 e-mails; a second replay sends none, and `--dry-run` sends nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from elasticsearch import Elasticsearch

from admin.dlq_reader import read_topic_to_end
from admin.dlq_records import DeadLetter
from admin.mailsink import build_controller
from devkit.credentials import producer_channel
from devkit.inbox import STATE_SLUGS, Inbox
from devkit.indices import search_docs
from devkit.net import free_port
from devkit.orders import order_request
from devkit.processes import Services, run_admin
from devkit.stack import EmbeddedStack
from devkit.waiting import wait_for
from pedidos.v1 import orders_pb2_grpc

pytestmark = pytest.mark.e2e

# A shop's new domain that the mail server was not yet set up to accept: 550 for each e-mail.
NEW_DOMAIN = "tienda-nueva.example.cl"
STATES = ("Procesando", "Preparación", "Enviado", "Entregado", "Finalizado")


def admin_dlq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_admin("dlq", *args, env=env, timeout_s=180)


def send_orders(env: dict[str, str], count: int, email: str) -> list[str]:
    with producer_channel(env["PRODUCER_ADDRESS"]) as channel:
        client = orders_pb2_grpc.OrderServiceStub(channel)
        return [
            client.CreateOrder(order_request(customer_email=email), timeout=10).order_id
            for _ in range(count)
        ]


def dead_letters(env: dict[str, str]) -> list[DeadLetter]:
    return list(read_topic_to_end(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_DEAD_LETTER_TOPIC"]))


def consumer_caught_up(env: dict[str, str]) -> bool:
    """The consumer group has finished every record on both of its topics.

    A step publishes its state record before its own record counts as finished, so when the
    group's committed offsets equal the end offsets nothing is in flight and nothing will come.
    """
    reader = Consumer(
        {
            "bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"],
            "group.id": env["KAFKA_CONSUMER_GROUP"],
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in (env["PEDIDOS_TOPIC"], env["PEDIDOS_STATES_TOPIC"])
            for p in reader.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        committed = reader.committed(partitions, timeout=10)
        for tp in committed:
            low, high = reader.get_watermark_offsets(tp, timeout=10)
            if max(tp.offset, low) < high:
                return False
        return True
    finally:
        reader.close()


def emails(maildir: Path, order_ids: list[str]) -> dict[str, list[str]]:
    return dict(Inbox(maildir).states_by_order(order_ids))


def ledger(env: dict[str, str], order_ids: list[str]) -> Counter[str]:
    docs = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_EVENTS_INDEX"], order_ids)
    return Counter(str(d["email_status"]) for d in docs)


def assert_complete(env: dict[str, str], order_ids: list[str]) -> None:
    orders = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_ORDERS_INDEX"], order_ids)
    assert sorted(d["order_id"] for d in orders) == sorted(order_ids)
    assert {d["state"] for d in orders} == {"Finalizado"}
    assert all(set(d["reached_at"]) == set(STATE_SLUGS) for d in orders)
    events = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_EVENTS_INDEX"], order_ids)
    assert {d["_id"] for d in events} == {f"{o}:{s}" for o in order_ids for s in STATES}


def header(record: dict[str, Any], name: str) -> list[str]:
    return [h["value"] for h in record["headers"] if h["name"] == name]


def test_refused_emails_are_sent_once_when_replayed_after_the_mail_server_is_fixed(
    services: Services, tmp_path: Path
) -> None:
    maildir, port = tmp_path / "mail", free_port()
    refusing = rf"@{re.escape(NEW_DOMAIN)}>?$"
    sink = build_controller(host="127.0.0.1", port=port, maildir=maildir, reject=refusing)
    sink.start()
    try:
        env = {**services.env, "SMTP_PORT": str(port)}
        services.producer()
        services.consumer(SMTP_PORT=port)
        order_ids = send_orders(env, 4, f"cliente@{NEW_DOMAIN}")
        wait_for(lambda: ledger(env, order_ids) == {"rejected": 20}, 120, "20 rejected steps", 0.5)
        wait_for(lambda: consumer_caught_up(env), 60, "the consumer to finish", 0.5)
        assert emails(maildir, order_ids) == {}

        listed = admin_dlq(env, "list")
        assert listed.returncode == 0, listed.stderr
        assert re.search(r"^notification\s+20\s.*recipient refused.*550", listed.stdout, re.M), (
            listed.stdout
        )
        shown = admin_dlq(env, "show", "--json", "--order", order_ids[0])
        assert shown.returncode == 0, shown.stderr
        records = [json.loads(line) for line in shown.stdout.splitlines()]
        assert len(records) == 5
        assert all(header(r, "pedidos-dlq-kind") == ["notification"] for r in records)
        assert all(r["key"] == order_ids[0] and "550" in r["reason"] for r in records)

        # The fix: the mail server now accepts the domain (same port, same Maildir).
        sink.stop()
        sink = build_controller(host="127.0.0.1", port=port, maildir=maildir)
        sink.start()

        dry = admin_dlq(env, "replay", "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "20 would send" in dry.stdout
        assert emails(maildir, order_ids) == {}
        assert ledger(env, order_ids) == {"rejected": 20}

        replay = admin_dlq(env, "replay", "--kind", "notification")
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert replay.stdout.rstrip().endswith("20 sent"), replay.stdout
        # The mail server stored each e-mail before it answered, so they are all there now.
        assert emails(maildir, order_ids) == {o: STATE_SLUGS for o in order_ids}
        assert ledger(env, order_ids) == {"sent": 20}

        again = admin_dlq(env, "replay")
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.rstrip().endswith("20 skipped"), again.stdout
        assert emails(maildir, order_ids) == {o: STATE_SLUGS for o in order_ids}
    finally:
        sink.stop()


def test_records_dead_lettered_by_a_broken_index_complete_once_when_replayed(
    services: Services, stack: EmbeddedStack
) -> None:
    env = services.env
    es = Elasticsearch(env["ELASTICSEARCH_URL"])
    # Someone recreated the current-state index by hand with a wrong type: writes are refused.
    es.indices.delete(index=env["ELASTICSEARCH_ORDERS_INDEX"])
    es.indices.create(
        index=env["ELASTICSEARCH_ORDERS_INDEX"],
        mappings={"properties": {"state": {"type": "integer"}}},
    )
    services.producer()
    services.consumer()
    order_ids = send_orders(env, 4, "comprador@example.cl")
    wait_for(
        lambda: {r.order_id for r in dead_letters(env)} >= set(order_ids),
        120,
        "every order dead-lettered",
        0.5,
    )
    wait_for(lambda: consumer_caught_up(env), 90, "the consumer to finish", 0.5)
    dead = dead_letters(env)
    sources = (env["PEDIDOS_TOPIC"] + "/", env["PEDIDOS_STATES_TOPIC"] + "/")
    for record in dead:
        assert record.header("pedidos-dlq-kind") == "record"
        assert record.kind == "record"
        assert (record.header("pedidos-source") or "").startswith(sources)
        assert "PermanentIndexError" in record.reason
        assert "[state]" in record.reason
        # The record's own headers come first, unchanged.
        assert [name for name, _ in record.headers[:3]] == [
            "content-type",
            "pedidos-schema",
            "correlation-id",
        ]
    assert search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_ORDERS_INDEX"], order_ids) == []
    maildir = stack.maildir
    before = emails(maildir, order_ids)

    listed = admin_dlq(env, "list", "--kind", "record")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:-1]  # one per state: the refused value is in the reason
    assert all(re.match(r"record\s+\d+\s.*PermanentIndexError", row) for row in rows), rows
    assert listed.stdout.splitlines()[-1] == f"total: {len(dead)}"

    # The fix: the index again as `admin setup` makes it (from the template).
    es.indices.delete(index=env["ELASTICSEARCH_ORDERS_INDEX"])
    es.indices.create(index=env["ELASTICSEARCH_ORDERS_INDEX"])
    es.close()

    size_before = topic_sizes(env)
    dry = admin_dlq(env, "replay", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"{len(dead)} would replay" in dry.stdout
    assert topic_sizes(env) == size_before

    replay = admin_dlq(env, "replay")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert replay.stdout.rstrip().endswith(f"{len(dead)} replayed"), replay.stdout
    wait_for(lambda: consumer_caught_up(env), 90, "the consumer to finish the replay", 0.5)
    assert_complete(env, order_ids)
    assert len(dead_letters(env)) == len(dead), "a replayed record was dead-lettered again"
    after = emails(maildir, order_ids)
    assert after == {o: STATE_SLUGS for o in order_ids}, (before, after)

    again = admin_dlq(env, "replay")
    assert again.returncode == 0, again.stdout + again.stderr
    wait_for(lambda: consumer_caught_up(env), 90, "the consumer to finish the second replay", 0.5)
    assert emails(maildir, order_ids) == {o: STATE_SLUGS for o in order_ids}
    assert len(dead_letters(env)) == len(dead), "a replayed record was dead-lettered again"


def topic_sizes(env: dict[str, str]) -> dict[str, int]:
    reader = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"], "group.id": "sizes"})
    try:
        sizes = {}
        for topic in (env["PEDIDOS_TOPIC"], env["PEDIDOS_STATES_TOPIC"]):
            partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
            sizes[topic] = sum(
                reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions
            )
        return sizes
    finally:
        reader.close()
