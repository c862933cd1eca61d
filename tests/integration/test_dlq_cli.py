"""`python -m admin dlq` against the embedded Kafka, on dead letters written by the consumer's own
DeadLetters class: summary, headers, filters, reading that touches no group, replay of records."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from admin.dlq_reader import READER_GROUP, read_topic_to_end
from consumer.dead_letters import DeadLetters
from devkit.processes import run_admin
from pedidos.adapters.kafka.publisher import KafkaPublisher, producer_config

pytestmark = pytest.mark.integration

ORDER = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
MAILED = "9c4e28ba-2fa1-41d2-883f-0016d3cca427"
EMAIL = (
    b"To: nadie@rechazado.example.cl\r\nFrom: Pedidos <pedidos@tienda.test>\r\n"
    b"Subject: Pedido recibido\r\nX-Pedidos-Order-Id: " + MAILED.encode() + b"\r\n"
    b"X-Pedidos-State: procesando\r\n\r\nHola\r\n"
)


def admin_dlq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_admin("dlq", *args, env=env)


def dead_letter(env: dict[str, str], *letters: tuple[Any, ...]) -> None:
    """Dead-letter as the consumer does: `DeadLetters.send(kind, key, value, error, source, …)`."""

    async def send() -> None:
        publisher = KafkaPublisher(producer_config(env["KAFKA_BOOTSTRAP_SERVERS"], "test", 30))
        try:
            dead = DeadLetters(publisher, env["PEDIDOS_DEAD_LETTER_TOPIC"])
            for letter in letters:
                await dead.send(*letter)
        finally:
            publisher.close(10)

    asyncio.run(send())


@pytest.fixture
def dead_letters(pipeline_env: dict[str, str]) -> dict[str, str]:
    topic = pipeline_env["PEDIDOS_TOPIC"]
    dead_letter(
        pipeline_env,
        (
            "record",
            "garbage",
            b"\x00not json",
            "PoisonRecord: not JSON: unexpected character",
            f"{topic}/1/5",
            [("correlation-id", b"c-1"), ("pedidos-error", b"set by the sender")],
        ),
        (
            "record",
            ORDER,
            b'{"schema":"pedidos.order","version":9}',
            "PoisonRecord: unsupported pedidos.order version 9",
            f"{topic}/2/9",
            [("content-type", b"application/json")],
        ),
        ("notification", MAILED, EMAIL, "recipient refused: {'nadie@x.cl': (550, b'no')}"),
    )
    return pipeline_env


def test_list_counts_by_kind_and_reason(dead_letters: dict[str, str]) -> None:
    listed = admin_dlq(dead_letters, "list")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].split() == ["kind", "count", "first", "last", "reason"]
    # Columns: kind, count, first and last time, reason.
    assert sorted(
        re.sub(r"\s+\S+Z\s+\S+Z\s+", " | ", " ".join(row.split())) for row in rows[1:4]
    ) == [
        "notification 1 | recipient refused: {'<e-mail>': (550, b'no')}",
        "record 1 | PoisonRecord: not JSON: unexpected character",
        "record 1 | PoisonRecord: unsupported pedidos.order version 9",
    ]
    assert rows[4] == "total: 3"


def test_show_prints_every_header_the_record_brought_and_the_consumers(
    dead_letters: dict[str, str],
) -> None:
    shown = admin_dlq(dead_letters, "show", "--json", "--order", "garbage")
    assert shown.returncode == 0, shown.stderr
    (record,) = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [(h["name"], h["value"]) for h in record["headers"]] == [
        ("correlation-id", "c-1"),
        ("pedidos-error", "set by the sender"),
        ("pedidos-dlq-kind", "record"),
        ("pedidos-error", "PoisonRecord: not JSON: unexpected character"),
        ("pedidos-source", f"{dead_letters['PEDIDOS_TOPIC']}/1/5"),
    ]
    assert record["kind"] == "record"
    assert record["reason"] == "PoisonRecord: not JSON: unexpected character"
    assert record["value"] == "\x00not json"

    readable = admin_dlq(dead_letters, "show", "--kind", "notification")
    assert readable.returncode == 0, readable.stderr
    assert "pedidos-dlq-kind: notification" in readable.stdout
    assert "e-mail: to=nadie@rechazado.example.cl state=Procesando" in readable.stdout
    assert readable.stdout.rstrip().endswith("1 dead letters shown")


@pytest.mark.parametrize(
    ("filters", "keys"),
    [
        ((), {"garbage", ORDER, MAILED}),
        (("--kind", "record"), {"garbage", ORDER}),
        (("--kind", "notification"), {MAILED}),
        (("--reason", "VERSION 9"), {ORDER}),
        (("--order", ORDER), {ORDER}),
        (("--kind", "notification", "--reason", "version"), set()),
    ],
)
def test_filters_select_by_kind_reason_and_order(
    dead_letters: dict[str, str], filters: tuple[str, ...], keys: set[str]
) -> None:
    shown = admin_dlq(dead_letters, "show", "--json", *filters)
    assert shown.returncode == 0, shown.stderr
    assert {json.loads(line)["key"] for line in shown.stdout.splitlines()} == keys


def test_the_time_range_uses_when_each_record_was_dead_lettered(
    dead_letters: dict[str, str],
) -> None:
    written = [
        r.timestamp
        for r in read_topic_to_end(
            dead_letters["KAFKA_BOOTSTRAP_SERVERS"], dead_letters["PEDIDOS_DEAD_LETTER_TOPIC"]
        )
    ]
    assert all(written)
    first, last = min(written), max(written)  # type: ignore[type-var]
    assert first is not None
    assert last is not None

    def keys(*filters: str) -> int:
        shown = admin_dlq(dead_letters, "show", "--json", *filters)
        assert shown.returncode == 0, shown.stderr
        return len(shown.stdout.splitlines())

    assert (
        keys("--since", first.isoformat(), "--until", (last + timedelta(seconds=1)).isoformat())
        == 3
    )
    assert keys("--since", (last + timedelta(seconds=1)).isoformat()) == 0
    assert keys("--until", first.isoformat()) == 0
    assert keys("--until", first.astimezone(UTC).replace(tzinfo=None).isoformat()) == 0
    empty = admin_dlq(
        dead_letters, "list", "--since", datetime.now(UTC).replace(year=2099).isoformat()
    )
    assert empty.returncode == 0, empty.stderr
    assert "no dead letters in" in empty.stdout


def test_reading_joins_no_group_commits_nothing_and_can_be_repeated(
    dead_letters: dict[str, str],
) -> None:
    bootstrap, topic = (
        dead_letters["KAFKA_BOOTSTRAP_SERVERS"],
        dead_letters["PEDIDOS_DEAD_LETTER_TOPIC"],
    )
    # Partitions are read side by side: each in offset order, not in one order overall.
    first = sorted(r.position for r in read_topic_to_end(bootstrap, topic))
    assert len(first) == 3
    assert sorted(r.position for r in read_topic_to_end(bootstrap, topic)) == first
    admin = AdminClient({"bootstrap.servers": bootstrap})
    groups = {g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid}
    assert READER_GROUP not in groups
    # Nothing committed under the reader's group id either.
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": READER_GROUP})
    try:
        committed = probe.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        assert all(tp.offset < 0 for tp in committed)
    finally:
        probe.close()


def records_of(bootstrap: str, topic: str) -> list[Any]:
    return list(read_topic_to_end(bootstrap, topic))


def test_replay_sends_records_back_to_their_partition_with_their_own_headers(
    dead_letters: dict[str, str],
) -> None:
    bootstrap, source = dead_letters["KAFKA_BOOTSTRAP_SERVERS"], dead_letters["PEDIDOS_TOPIC"]
    dry = admin_dlq(dead_letters, "replay", "--kind", "record", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert dry.stdout.splitlines()[-1] == "dry run, nothing done: 2 would replay"
    assert records_of(bootstrap, source) == []

    replay = admin_dlq(dead_letters, "replay", "--kind", "record")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert replay.stdout.splitlines()[-1] == "2 replayed"
    replayed = {r.key: r for r in records_of(bootstrap, source)}
    assert set(replayed) == {b"garbage", ORDER.encode()}
    garbage, order = replayed[b"garbage"], replayed[ORDER.encode()]
    assert (garbage.partition, order.partition) == (1, 2)
    assert garbage.value == b"\x00not json"
    dlq = dead_letters["PEDIDOS_DEAD_LETTER_TOPIC"]
    assert garbage.headers[:2] == [
        ("correlation-id", b"c-1"),
        ("pedidos-error", b"set by the sender"),
    ]
    assert garbage.headers[2][0] == "pedidos-replayed-from"
    assert re.fullmatch(rf"{re.escape(dlq)}/\d/\d+", garbage.headers[2][1].decode())
    assert len(garbage.headers) == 3
    assert order.headers[0] == ("content-type", b"application/json")


def test_a_record_without_a_source_is_reported_and_fails_the_command(
    pipeline_env: dict[str, str],
) -> None:
    dead_letter(pipeline_env, ("record", "lost", b"{}", "PoisonRecord: x", ""))
    replay = admin_dlq(pipeline_env, "replay")
    assert replay.returncode == 1
    assert "failed  no pedidos-source header" in replay.stdout


def test_a_missing_topic_or_an_unreachable_kafka_is_one_clear_line(
    pipeline_env: dict[str, str],
) -> None:
    missing = f"Pedidos.dlq-missing-{uuid.uuid4().hex[:6]}"
    result = admin_dlq({**pipeline_env, "PEDIDOS_DEAD_LETTER_TOPIC": missing}, "list")
    assert result.returncode == 1
    assert result.stderr.startswith(f"admin: reading {missing}: topic {missing!r} not found")
    assert "Traceback" not in result.stderr
    down = admin_dlq(
        {**pipeline_env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, "list", "--timeout", "2"
    )
    assert down.returncode == 1
    assert down.stderr.startswith("admin: reading ")
    assert "cannot reach Kafka" in down.stderr
    assert "Traceback" not in down.stderr
