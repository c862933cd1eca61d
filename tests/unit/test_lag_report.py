"""The lag arithmetic and both output formats of `python -m admin lag`."""

from __future__ import annotations

import json

import pytest

from admin.lag import format_table, to_json
from devkit.net import free_port
from devkit.processes import run_admin
from pedidos.adapters.kafka.lag import (
    GroupLag,
    LagError,
    LagReader,
    Member,
    PartitionLag,
    partition_lag,
)

MEMBER = Member("rdkafka-1f3a", "rdkafka", "/127.0.0.1")


def group() -> GroupLag:
    return GroupLag(
        "pedidos-consumer",
        "STABLE",
        (MEMBER,),
        (
            PartitionLag("Pedidos", 0, 12, 15, 3, MEMBER),
            PartitionLag("Pedidos.estados", 1, None, 4, 4, None),
        ),
    )


@pytest.mark.parametrize(
    ("committed", "start", "end", "lag"),
    [
        (10, 0, 10, 0),  # caught up
        (7, 0, 10, 3),
        (None, 0, 10, 10),  # never committed: reads from the log start
        (None, 4, 10, 6),  # ...which retention may have moved
        (2, 4, 10, 6),  # committed offset deleted by retention: resumes at the log start
        (12, 0, 10, 0),  # never negative
    ],
)
def test_partition_lag(committed: int | None, start: int, end: int, lag: int) -> None:
    assert partition_lag(committed, start, end) == lag


def test_the_table_has_one_line_per_partition_with_its_owner() -> None:
    lines = format_table([group()]).splitlines()
    assert lines[0] == "group pedidos-consumer (stable, 1 member, lag 7)"
    assert lines[1].split() == ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"]
    assert lines[2].split() == ["Pedidos", "0", "12", "15", "3", "rdkafka@127.0.0.1"]
    assert lines[3].split() == ["Pedidos.estados", "1", "-", "4", "4", "-"]
    assert len(lines) == 4


def test_an_idle_group_says_so() -> None:
    empty = GroupLag("g", "EMPTY", (), ())
    assert format_table([empty]).splitlines() == [
        "group g (empty, 0 members, lag 0)",
        "  TOPIC  PARTITION   COMMITTED         END       LAG  MEMBER",
        "  (no partitions assigned or committed)",
    ]


def test_json_carries_every_field() -> None:
    data = json.loads(to_json([group()]))
    (only,) = data["groups"]
    assert only["group"] == "pedidos-consumer"
    assert only["state"] == "STABLE"
    assert only["lag"] == 7
    assert only["members"] == [
        {"member_id": "rdkafka-1f3a", "client_id": "rdkafka", "host": "/127.0.0.1"}
    ]
    assert only["partitions"] == [
        {
            "topic": "Pedidos",
            "partition": 0,
            "committed": 12,
            "end": 15,
            "lag": 3,
            "member": "rdkafka-1f3a",
        },
        {
            "topic": "Pedidos.estados",
            "partition": 1,
            "committed": None,
            "end": 4,
            "lag": 4,
            "member": None,
        },
    ]


def test_an_unreachable_broker_is_one_error() -> None:
    # A port nobody listens on: a real refused connection, no broker needed.
    reader = LagReader(f"127.0.0.1:{free_port()}", timeout_s=1)
    with pytest.raises(LagError, match="cannot reach Kafka"):
        reader.read(["pedidos-consumer"])


def test_the_command_exits_1_with_one_line_when_kafka_is_down() -> None:
    result = run_admin(
        "lag",
        env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"},
        inherit=False,
        timeout_s=60,
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("admin: cannot reach Kafka at 127.0.0.1:")
    assert result.stdout == ""
