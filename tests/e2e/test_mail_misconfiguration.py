"""A mail server the consumer cannot use (no credentials, 4xx replies) delays e-mails, never loses
or dead-letters them, and pauses intake until it can send again."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from devkit.inbox import STATE_SLUGS, Inbox
from devkit.indices import search_docs
from devkit.net import free_port
from devkit.processes import Services
from devkit.stack import EmbeddedStack, MailSinkOptions, StackPorts
from devkit.waiting import wait_for
from tests.e2e.test_pipeline import assert_documents, send_orders, wait_all_emails

pytestmark = [
    pytest.mark.e2e,
    # The sink requires AUTH without TLS (plain loopback) and aiosmtpd warns about it.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS"),
]

USER, PASSWORD = "tienda", "correct horse battery staple"  # pragma: allowlist secret
OUTAGE_LINE = "sending e-mail failed"


def start_sink(root: Path, options: MailSinkOptions) -> EmbeddedStack:
    sink = EmbeddedStack(
        root, StackPorts(free_port(), free_port(), free_port()), options, tied_to_parent=True
    )
    sink.start("smtp")
    return sink


@pytest.fixture
def auth_sink(tmp_path: Path) -> Iterator[EmbeddedStack]:
    sink = start_sink(
        tmp_path / "auth-sink", MailSinkOptions(auth_user=USER, auth_password=PASSWORD)
    )
    try:
        yield sink
    finally:
        sink.stop("smtp")


def topic_size(bootstrap: str, topic: str) -> int:
    """Records ever written to `topic` (the sum of its partitions' end offsets)."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"size-{uuid.uuid4()}"})
    try:
        partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        reader.close()


def log_records(log: str, message: str) -> list[dict[str, Any]]:
    return [
        record
        for line in log.splitlines()
        if message in line and line.startswith("{")
        for record in [json.loads(line)]
        if record.get("message", "").startswith(message)
    ]


def outage_lines(log: str) -> list[dict[str, Any]]:
    return log_records(log, OUTAGE_LINE)


def test_no_credentials_dead_letter_nothing_and_a_restart_with_them_delivers_each_email_once(
    services: Services, auth_sink: EmbeddedStack
) -> None:
    env = services.env
    port = str(auth_sink.ports.smtp)
    services.producer()
    consumer = services.consumer(SMTP_PORT=port)
    first = send_orders(env["PRODUCER_ADDRESS"], 10)
    wait_for(lambda: outage_lines(consumer.log()), 60, "the outage to be logged", 0.2)
    consumer.wait_log("intake paused during the mail outage", timeout=30)
    # Orders accepted during the outage must wait on Kafka: intake is paused.
    second = send_orders(env["PRODUCER_ADDRESS"], 10)
    seen = len(outage_lines(consumer.log()))
    # Two more interval lines: the later one comes at least one interval after `second` was sent.
    lines = wait_for(
        lambda: (found := outage_lines(consumer.log()))[seen + 1 :] and found,
        90,
        "two more outage log lines",
        0.5,
    )
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    assert topic_size(bootstrap, env["PEDIDOS_DEAD_LETTER_TOPIC"]) == 0
    assert topic_size(bootstrap, env["PEDIDOS_STATES_TOPIC"]) == 0  # no order moved on
    assert Inbox(auth_sink.maildir).states_by_order(first + second) == {}
    assert consumer.running
    last = lines[-1]
    print(
        f"outage: {len(lines)} log lines in {last['outage_s']}s, {last['failed_attempts']} failed "
        f"attempts, {last['waiting']} e-mails waiting"
    )
    assert "530 5.7.0 Authentication required" in last["message"]
    assert "SMTP_USER/SMTP_PASSWORD" in last["message"]
    assert "intake paused" in last["message"]
    assert 1 <= last["waiting"] <= len(first), last  # no order of `second` was started
    # One line per interval (10 s), not one per attempt.
    assert len(lines) <= last["outage_s"] / 10 + 2, [line["outage_s"] for line in lines]
    assert last["failed_attempts"] > len(lines), last

    assert consumer.stop(timeout=60) == 0
    services.consumer(SMTP_PORT=port, SMTP_USER=USER, SMTP_PASSWORD=PASSWORD)
    orders = first + second
    inbox = Inbox(auth_sink.maildir)
    wait_all_emails(inbox, orders, timeout=180)
    assert_documents(env, orders)  # every order Finalizado, 5 event documents each
    states = inbox.states_by_order(orders)
    assert all(states[o] == STATE_SLUGS for o in orders), states  # each e-mail exactly once
    events = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_EVENTS_INDEX"], orders)
    assert {d["email_status"] for d in events} == {"sent"}
    assert topic_size(bootstrap, env["PEDIDOS_DEAD_LETTER_TOPIC"]) == 0


def test_a_relay_refusing_our_login_is_named_when_the_consumer_starts(
    services: Services, auth_sink: EmbeddedStack
) -> None:
    port = str(auth_sink.ports.smtp)
    consumer = services.consumer(SMTP_PORT=port, SMTP_USER=USER, SMTP_PASSWORD="wrong")
    consumer.wait_log("SMTP relay not ready", timeout=30)
    assert consumer.running  # named, not fatal: e-mails wait for the relay
    (line,) = log_records(consumer.log(), "SMTP relay not ready")
    assert line["level"] == "WARNING"
    assert "SMTP authentication failed (535" in line["message"], line
    assert "check SMTP_USER/SMTP_PASSWORD" in line["message"], line
    assert line["smtp"].endswith(f":{port}"), line
    assert consumer.stop(timeout=60) == 0

    fixed = services.consumer(SMTP_PORT=port, SMTP_USER=USER, SMTP_PASSWORD=PASSWORD)
    fixed.wait_log("SMTP relay connected", timeout=30)
    assert log_records(fixed.log(), "SMTP relay not ready") == []


@pytest.fixture
def deferring_sink(tmp_path: Path) -> Iterator[EmbeddedStack]:
    options = MailSinkOptions(defer=("mail:421:3", "rcpt:451:2", "data:451:3"))
    sink = start_sink(tmp_path / "deferring-sink", options)
    try:
        yield sink
    finally:
        sink.stop("smtp")


def test_421_and_451_replies_are_retried_and_every_email_arrives_once(
    services: Services, deferring_sink: EmbeddedStack
) -> None:
    env = services.env
    services.producer()
    consumer = services.consumer(SMTP_PORT=deferring_sink.ports.smtp)
    orders = send_orders(env["PRODUCER_ADDRESS"], 5)
    inbox = Inbox(deferring_sink.maildir)
    wait_all_emails(inbox, orders, timeout=120)
    assert_documents(env, orders)
    states = inbox.states_by_order(orders)
    assert all(states[o] == STATE_SLUGS for o in orders), states
    events = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_EVENTS_INDEX"], orders)
    assert {d["email_status"] for d in events} == {"sent"}
    assert topic_size(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_DEAD_LETTER_TOPIC"]) == 0
    # Every deferral was really made, and the consumer saw an outage and a recipient deferral.
    # Its log reports an outage once per interval, so a 451 at DATA during the 421's outage
    # may not get a line of its own: that reply's reading is tested in test_smtp_security.
    made = deferring_sink.log_path("smtp").read_text()
    assert made.count("deferred MAIL: 421 4.3.2") == 3, made
    assert made.count("deferred RCPT: 451 4.3.0") == 2, made
    assert made.count("deferred DATA: 451 4.3.0") == 3, made
    log = consumer.log()
    assert "deferred all mail (421 4.3.2" in log
    assert "recipient deferred: 451 4.3.0" in log
