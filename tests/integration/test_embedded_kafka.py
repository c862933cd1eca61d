"""The embedded Apache Kafka: it keeps its data across restarts, and every missing prerequisite
is one clear line with exit 2, never a hang."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from admin import setup
from devkit.apache_kafka import BROKER_ENV, choose_broker, java_major
from devkit.net import free_port
from devkit.processes import run_admin
from devkit.stack import EmbeddedStack
from devkit.topics import create_topic
from devkit.waiting import wait_for
from pedidos.runtime.config import load_settings

pytestmark = pytest.mark.integration


def admin_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_admin(*args, env=env, inherit=False, cwd=cwd)


def test_a_restarted_broker_keeps_topics_records_and_committed_offsets(
    broker: EmbeddedStack,
) -> None:
    bootstrap = broker.env()["KAFKA_BOOTSTRAP_SERVERS"]
    create_topic(bootstrap, "durable", 2)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(10):
        producer.produce("durable", key=str(i).encode(), value=b"v%d" % i)
    assert producer.flush(30) == 0
    group = Consumer({"bootstrap.servers": bootstrap, "group.id": "keeps"})

    def commit() -> bool:
        # The first commit creates __consumer_offsets: NOT_COORDINATOR until it exists.
        try:
            group.commit(offsets=[TopicPartition("durable", 0, 3)], asynchronous=False)
        except KafkaException:
            return False
        return True

    wait_for(commit, 60, "the first offset commit")
    group.close()

    broker.stop("kafka")
    assert broker.pid("kafka") is None
    broker.start("kafka")

    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "keeps"})

    def high_watermarks() -> list[int] | None:
        # A restarted broker answers NOT_LEADER_FOR_PARTITION until it has reloaded its logs
        # and re-elected itself: retriable, as for every client, so retried here too.
        try:
            return [
                reader.get_watermark_offsets(TopicPartition("durable", p), 30)[1] for p in (0, 1)
            ]
        except KafkaException as error:
            if (
                error.args[0].retriable()
                or error.args[0].code() == KafkaError.NOT_LEADER_FOR_PARTITION
            ):
                return None
            raise

    highs = wait_for(high_watermarks, 60, "the restarted broker to lead its partitions")
    committed = reader.committed([TopicPartition("durable", 0)], timeout=30)[0].offset
    reader.close()
    assert sum(highs) == 10
    assert committed == 3


def test_setup_readies_the_consumer_groups_coordinator_on_a_new_broker(
    broker: EmbeddedStack,
) -> None:
    """On a new broker the group's coordinator does not exist until something asks for it; a
    consumer asking first waited 1-3 s before its first order. `admin setup` asks instead."""
    bootstrap = broker.env()["KAFKA_BOOTSTRAP_SERVERS"]
    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert "__consumer_offsets" not in admin.list_topics(timeout=30).topics
    setup.create_topics(settings)

    group = settings.kafka_consumer_group
    assert setup.ready_group_coordinator(settings) == "coordinator ready (new group)"
    # Loaded, not loading: the group's next request is answered, not NOT_COORDINATOR.
    described = admin.describe_consumer_groups([group], request_timeout=10)[group]
    assert described.result(timeout=10).state == ConsumerGroupState.DEAD
    assert "__consumer_offsets" in admin.list_topics(timeout=30).topics


def test_apache_kafka_without_java_is_one_line_and_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = admin_cli(
        "stack", "up", "--kafka", "apache", "--dir", str(tmp_path / "s"),
        env={"PATH": str(empty)}, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "needs Java 17+ (no java on PATH)" in lines[0]
    assert "--kafka tansu" in lines[0]


def test_a_too_old_java_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Java 11 cannot be installed beside 17 here: a stand-in `java` prints what Java 11 prints.
    fake = tmp_path / "bin"
    fake.mkdir()
    java = fake / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    java.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    assert java_major() == 11
    with pytest.raises(RuntimeError, match=r"needs Java 17\+ \(java 11\)"):
        choose_broker("apache")
    fallback = choose_broker(None)
    assert fallback.name == "tansu"
    assert fallback.note
    assert "Java 17+" in fallback.note


def test_the_choice_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BROKER_ENV, "tansu")
    assert choose_broker(None).name == "tansu"
    monkeypatch.setenv(BROKER_ENV, "kafka")
    with pytest.raises(RuntimeError, match="unknown embedded Kafka 'kafka'"):
        choose_broker(None)
    if (java_major() or 0) >= 17:
        monkeypatch.setenv(BROKER_ENV, "auto")
        assert choose_broker(None) == choose_broker("apache")


def test_a_broken_cache_names_the_fix(tmp_path: Path) -> None:
    if (java_major() or 0) < 17:
        pytest.skip("Apache Kafka needs Java 17+")
    libs = tmp_path / "cache" / "apache-kafka-4.1.0" / "libs"
    libs.mkdir(parents=True)
    (libs / "manifest.json").write_text(json.dumps({"kafka_2.13-4.1.0.jar": 123}))
    result = admin_cli(
        "stack", "up", "--kafka", "apache", "--dir", str(tmp_path / "s"),
        "--kafka-port", str(free_port()),
        env={"PATH": os.environ["PATH"], "PEDIDOS_CACHE_DIR": str(tmp_path / "cache")},
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "kafka_2.13-4.1.0.jar is missing or truncated" in result.stderr
    assert f"rm -rf {libs.parent}" in result.stderr


def test_a_taken_port_names_the_fix(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = admin_cli(
            "stack", "up", "--kafka", "tansu", "--dir", str(tmp_path / "s"),
            "--kafka-port", str(port),
            env={"PATH": os.environ["PATH"]}, cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {port} is already in use" in result.stderr
    assert "--kafka-port" in result.stderr
