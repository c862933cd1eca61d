"""`python -m admin lag` against the real consumer on Apache Kafka: the lag grows while the
consumer is down and returns to 0 once it has caught up."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from typing import Any

import pytest

from client.connection import ChannelSecurity
from client.orders import random_requests
from client.send import send_to_producer
from devkit.credentials import dev_key
from devkit.inbox import Inbox
from devkit.processes import Services, run_admin
from devkit.stack import EmbeddedStack
from devkit.waiting import wait_for

# Generous: these machines run several suites at once on two cores.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def admin_lag(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_admin("lag", *args, env=env)


def lag_report(env: dict[str, str]) -> dict[str, Any]:
    result = admin_lag(env, "--json")
    assert result.returncode == 0, result.stderr
    (group,) = json.loads(result.stdout)["groups"]
    assert group["group"] == env["KAFKA_CONSUMER_GROUP"]
    return dict(group)


def lag_by_topic(group: dict[str, Any]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in group["partitions"]:
        totals[row["topic"]] = totals.get(row["topic"], 0) + row["lag"]
    return totals


def send(address: str, count: int) -> list[str]:
    report = asyncio.run(
        send_to_producer(
            address,
            random_requests(count, "cliente@example.cl", random.Random()),
            8,
            10,
            3,
            security=ChannelSecurity(api_key=dev_key()[0]),
        )
    )
    assert report.all_accepted, report
    return list(report.order_ids)


def all_finished(inbox: Inbox, order_ids: list[str]) -> bool:
    states = inbox.states_by_order(order_ids)
    return len(states) == len(order_ids) and all(len(set(s)) == 5 for s in states.values())


def test_lag_grows_while_the_consumer_is_down_and_returns_to_zero(
    services: Services, stack: EmbeddedStack
) -> None:
    env = services.env
    inbox = Inbox(stack.maildir)
    services.producer()
    consumer = services.consumer()
    first = send(env["PRODUCER_ADDRESS"], 10)
    wait_for(lambda: all_finished(inbox, first), 300, "the first orders to finish")
    running = wait_for(
        lambda: (g := lag_report(env))["lag"] == 0 and g, 60, "lag 0 with the consumer running"
    )
    assert running["state"] == "STABLE"
    (member,) = running["members"]
    assert member["host"].lstrip("/") == "127.0.0.1"
    topics = {env["PEDIDOS_TOPIC"], env["PEDIDOS_STATES_TOPIC"]}
    assert {(r["topic"], r["partition"]) for r in running["partitions"]} == {
        (t, p) for t in topics for p in range(3)
    }
    # Every partition is owned by the one member, and its records are all committed.
    assert all(r["member"] == member["member_id"] for r in running["partitions"])
    assert all(r["committed"] == r["end"] for r in running["partitions"] if r["end"] > 0)

    assert consumer.stop() == 0
    backlog = send(env["PRODUCER_ADDRESS"], 25)
    stopped = lag_report(env)
    assert stopped["state"] == "EMPTY"
    assert stopped["members"] == []
    # Each new order is one unread record on `Pedidos`; no state was reached while down.
    assert lag_by_topic(stopped) == {env["PEDIDOS_TOPIC"]: 25, env["PEDIDOS_STATES_TOPIC"]: 0}
    table = admin_lag(env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0] == (
        f"group {env['KAFKA_CONSUMER_GROUP']} (empty, 0 members, lag 25)"
    )

    services.consumer()
    wait_for(lambda: all_finished(inbox, backlog), 300, "the backlog to finish")
    caught_up = wait_for(
        lambda: (g := lag_report(env))["lag"] == 0 and g, 60, "lag back to 0 after catching up"
    )
    assert lag_by_topic(caught_up) == {env["PEDIDOS_TOPIC"]: 0, env["PEDIDOS_STATES_TOPIC"]: 0}
    assert len(caught_up["members"]) == 1


def test_an_unknown_group_is_named(pipeline_env: dict[str, str]) -> None:
    result = admin_lag(pipeline_env, "--group", "nadie-consume-esto")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "admin: unknown consumer group 'nadie-consume-esto' (no members, no offsets)"
    )


def test_all_groups_lists_this_one(services: Services) -> None:
    services.consumer()
    result = admin_lag(services.env, "--all", "--json")
    assert result.returncode == 0, result.stderr
    groups = {g["group"]: g for g in json.loads(result.stdout)["groups"]}
    assert len(groups[services.env["KAFKA_CONSUMER_GROUP"]]["members"]) == 1
