"""Partitions added mid-run (`python -m admin topics --partitions 6`) under three consumers.

Running clients keep their old partition count until their next metadata refresh (librdkafka:
every 5 minutes; 290 s measured here), so the scenario does what an operator does to adopt the
change at once: three new consumers join, the three old ones leave gracefully, the producer is
restarted. Orders keep coming meanwhile, so walks are in flight throughout. A consumer publishes
each state record to the partition of the record that triggered it (not by the key's hash, which
the new count changes), so every walk in flight stays on the partition its order was accepted
on, with one consumer: it must be whole, in order, and e-mailed once per state. New orders use
the new partitions.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from devkit.inbox import STATE_SLUGS, Inbox
from devkit.processes import ServiceProcess, Services, run_admin
from devkit.stack import EmbeddedStack
from devkit.waiting import wait_for
from tests.chaos.test_chaos import (
    CHAOS_CONSUMER_SMTP,
    account,
    progress,
    send,
    wait_complete,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

BEFORE, AFTER = 3, 6
# Walks long enough to be in flight through the change and the rolling restart.
SLOW_WALKS: dict[str, object] = {"STAGE_DELAY_MIN_S": 3.0, "STAGE_DELAY_MAX_S": 5.0}


@pytest.fixture
def orders(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--chaos-orders"))


def partitions_by_order(bootstrap: str, topic: str) -> dict[str, set[int]]:
    """Every partition each order's records sit on, read from the start to the end offsets."""
    reader = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    try:
        count = len(reader.list_topics(topic, timeout=30).topics[topic].partitions)
        ends = {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in range(count)
        }
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(count)])
        found: dict[str, set[int]] = defaultdict(set)
        position = dict.fromkeys(range(count), 0)

        def read_all() -> bool:
            for message in reader.consume(1000, 0.5):
                partition, offset = message.partition(), message.offset()
                if message.error() is None and partition is not None and offset is not None:
                    found[(message.key() or b"").decode()].add(partition)
                    position[partition] = offset + 1
            return all(position[p] >= ends[p] for p in range(count))

        wait_for(read_all, 120, f"all of {topic}")
        return found
    finally:
        reader.close()


def assigned_partitions(consumers: list[ServiceProcess], topic: str) -> set[int]:
    """Partitions of `topic` in the consumers' latest assignments (from their JSON logs)."""
    found: set[int] = set()
    for consumer in consumers:
        assignments = [
            json.loads(line)["partitions"]
            for line in consumer.log().splitlines()
            if '"partitions assigned"' in line
        ]
        for name in assignments[-1] if assignments else []:
            name_topic, _, number = name.rpartition("-")
            if name_topic == topic:
                found.add(int(number))
    return found


def test_partitions_added_mid_run_with_three_consumers(
    services: Services, stack: EmbeddedStack, orders: int
) -> None:
    env = services.env
    settings: dict[str, Any] = {**SLOW_WALKS, **CHAOS_CONSUMER_SMTP}
    producer = services.producer()
    consumers = [services.consumer(**settings)]
    for _ in range(2):
        consumers.append(services.consumer(wait_assigned=False, **settings))
        consumers[-1].wait_log("partitions assigned", timeout=120)
    inbox = Inbox(stack.maildir)
    first = send(env["PRODUCER_ADDRESS"], orders)
    wait_for(lambda: progress(inbox, first) >= len(first) // 2, 300, "walks under way", 0.2)
    # Orders keep coming through the change, so walks are in flight whatever the timing.
    swapped = threading.Event()
    during: list[str] = []

    def keep_sending() -> None:
        # Ten orders every half second, up to half a wave: a slow swap must not flood it.
        while not swapped.wait(0.5) and len(during) < max(50, orders // 2):
            during.extend(send(env["PRODUCER_ADDRESS"], 10))

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()

    started = time.monotonic()
    grown = run_admin("topics", "--partitions", str(AFTER), env=env)
    assert grown.returncode == 0, grown.stderr
    assert all(f"{BEFORE} -> {AFTER} partitions" in line for line in grown.stdout.splitlines())
    # The consumers are replaced (new ones join, then the old ones leave gracefully): each new
    # process starts with the new count.
    replacements = []
    for _ in consumers:
        replacements.append(services.consumer(wait_assigned=False, **settings))
        replacements[-1].wait_log("partitions assigned", timeout=120)
    for old in consumers:
        old.signal(signal.SIGTERM)  # all at once, as a rolling deploy would
    # Wait, not stop(): a second SIGTERM during a graceful shutdown means "now" (exit -15).
    assert [old.process.wait(60) if old.process else None for old in consumers] == [0, 0, 0]
    consumers = replacements
    swapped.set()
    sender.join()
    first += during
    wait_for(
        lambda: assigned_partitions(consumers, env["PEDIDOS_STATES_TOPIC"]) == set(range(AFTER)),
        120,
        f"all {AFTER} partitions assigned",
    )
    assert producer.stop() == 0
    services.producer()
    second = send(env["PRODUCER_ADDRESS"], max(30, orders // 4))
    order_ids = first + second
    recovery = wait_complete(inbox, order_ids, 900)
    print(
        f"partitions added after {len(first)} orders were sent; all done {recovery:.0f} s "
        f"after the restarts ({time.monotonic() - started:.0f} s after the change)"
    )

    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    accepted = partitions_by_order(bootstrap, env["PEDIDOS_TOPIC"])
    reached = partitions_by_order(bootstrap, env["PEDIDOS_STATES_TOPIC"])
    # New orders use the new partitions, and the consumers read them.
    assert any(accepted[o] & set(range(BEFORE, AFTER)) for o in second)
    # Before pinning, 112-159 of 300 walks in flight spread over two partitions here, and two
    # consumers then ran the same next step at once (4-33 repeated e-mails per run).
    moved = {o: accepted[o] | reached[o] for o in order_ids if len(accepted[o] | reached[o]) > 1}
    assert not moved, f"{len(moved)} walks span partitions, e.g. {list(moved.items())[:3]}"
    states = inbox.states_by_order(first)
    broken = {o: states.get(o) for o in first if states.get(o) != STATE_SLUGS}
    assert not broken, broken

    row = account(
        f"partitions {BEFORE} -> {AFTER} mid-run", services, stack, order_ids, recovery, 1
    )
    assert row.lost == 0
    assert row.duplicate_emails == 0
