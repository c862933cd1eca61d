"""`python -m admin topics --partitions N` on Apache Kafka: the three co-partitioned topics grow
together, never shrink, and are never left unequal; Tansu, without CreatePartitions, says so."""

from __future__ import annotations

import re
import subprocess

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions

from devkit.processes import run_admin
from devkit.stack import EmbeddedStack
from devkit.waiting import wait_for

pytestmark = pytest.mark.integration


def topics_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_admin("topics", *args, env=env)


def names(env: dict[str, str]) -> list[str]:
    return [env["PEDIDOS_TOPIC"], env["PEDIDOS_STATES_TOPIC"], env["PEDIDOS_DEAD_LETTER_TOPIC"]]


def partitions(env: dict[str, str]) -> list[int]:
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    metadata = admin.list_topics(timeout=30)
    return [len(metadata.topics[name].partitions) for name in names(env)]


def counts(env: dict[str, str]) -> list[int]:
    """The counts as the controller holds them: exact at once, while broker metadata can lag a
    change by a moment. Asking to "grow" to 1 partition is refused with the current count."""
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    futures = admin.create_partitions(
        [NewPartitions(name, 1) for name in names(env)], validate_only=True
    )
    counts = []
    for name in names(env):
        with pytest.raises(KafkaException) as refused:
            futures[name].result(30)
        found = re.search(r"currently has (\d+) partition", refused.value.args[0].str())
        assert found, refused.value
        counts.append(int(found.group(1)))
    return counts


def test_the_three_topics_grow_together(pipeline_env: dict[str, str]) -> None:
    assert partitions(pipeline_env) == [3, 3, 3]
    result = topics_cli(pipeline_env, "--partitions", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"topic {n}: 3 -> 5 partitions" for n in names(pipeline_env)
    ]
    assert counts(pipeline_env) == [5, 5, 5]
    again = topics_cli(pipeline_env, "--partitions", "5")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"topic {n}: already 5 partitions" for n in names(pipeline_env)
    ]


def test_shrinking_is_refused_and_changes_nothing(pipeline_env: dict[str, str]) -> None:
    result = topics_cli(pipeline_env, "--partitions", "2")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("admin: refusing to shrink to 2 partitions: ")
    assert "Kafka cannot remove partitions" in result.stderr
    assert counts(pipeline_env) == [3, 3, 3]


def test_unequal_topics_are_brought_to_the_same_count(pipeline_env: dict[str, str]) -> None:
    # As an interrupted earlier run (or a hand-made change) would leave them.
    admin = AdminClient({"bootstrap.servers": pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]})
    states = pipeline_env["PEDIDOS_STATES_TOPIC"]
    admin.create_partitions([NewPartitions(states, 6)])[states].result(30)
    assert counts(pipeline_env) == [3, 6, 3]
    # The command reads the counts from metadata, which must have caught up first.
    wait_for(lambda: partitions(pipeline_env) == [3, 6, 3], 30, "metadata of the change")

    refused = topics_cli(pipeline_env, "--partitions", "4")
    assert refused.returncode == 2
    assert f"{states} has 6" in refused.stderr
    assert counts(pipeline_env) == [3, 6, 3]

    repaired = topics_cli(pipeline_env, "--partitions", "6")
    assert repaired.returncode == 0, repaired.stderr
    orders, _, dead = names(pipeline_env)
    assert repaired.stdout.splitlines() == [
        f"topic {orders}: 3 -> 6 partitions",
        f"topic {states}: already 6 partitions",
        f"topic {dead}: 3 -> 6 partitions",
    ]
    assert counts(pipeline_env) == [6, 6, 6]


def test_a_missing_topic_stops_it_before_any_change(pipeline_env: dict[str, str]) -> None:
    env = {**pipeline_env, "PEDIDOS_DEAD_LETTER_TOPIC": pipeline_env["PEDIDOS_TOPIC"] + "-nada"}
    result = topics_cli(env, "--partitions", "4")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"admin: missing topics: {env['PEDIDOS_DEAD_LETTER_TOPIC']}; "
        "run `python -m admin setup` first"
    )
    assert counts(pipeline_env) == [3, 3, 3]


def test_tansu_has_no_create_partitions(tansu_stack: EmbeddedStack) -> None:
    from tests.conftest import isolated_env

    env = isolated_env(tansu_stack.env())
    result = topics_cli(env, "--partitions", "4")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "cannot add partitions (no CreatePartitions support, e.g. Tansu)" in result.stderr
    assert partitions(env) == [3, 3, 3]  # Tansu refuses even to validate
