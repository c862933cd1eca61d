"""The embedded Apache Kafka: the compose image's broker (4.1.0), fetched from Maven Central with
Maven into a cache outside the work tree and run as one KRaft broker+controller with `java`.

The cache is filled once (`mvn dependency:copy-dependencies` on `kafka_dist/pom.xml`) and reused
offline afterwards. A node's storage is formatted once; restarting on the same directory keeps
every topic, record and committed offset.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from devkit.cache import cache_root, fill_once

KAFKA_VERSION = "4.1.0"
MIN_JAVA = 17
DIST_DIR = Path(__file__).parent / "kafka_dist"
# The broker's and the tools' main classes, as the distribution's shell scripts call them.
BROKER_MAIN = "kafka.Kafka"
STORAGE_MAIN = "kafka.tools.StorageTool"
PRODUCER_PERF_MAIN = "org.apache.kafka.tools.ProducerPerformance"
HEAP = ("-Xms256m", "-Xmx1g")
BROKERS = ("apache", "tansu")
BROKER_ENV = "PEDIDOS_EMBEDDED_KAFKA"


class KafkaSetupError(RuntimeError):
    """A missing prerequisite or a broken cache: one line that names the fix."""


@dataclass(frozen=True)
class BrokerChoice:
    name: str  # "apache" or "tansu"
    note: str | None = None  # why the fallback was taken, for one line on the console


def libs_dir() -> Path:
    return cache_root() / f"apache-kafka-{KAFKA_VERSION}" / "libs"


def java_major(java: str = "java") -> int | None:
    """The major version of `java` on PATH, or None when there is none."""
    if shutil.which(java) is None:
        return None
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not found:
        return None
    major = int(found.group(1))
    # Java 8 and older say "1.8".
    return int(found.group(2) or 0) if major == 1 else major


def _manifest() -> Path:
    return libs_dir() / "manifest.json"


def cache_filled() -> bool:
    return _manifest().is_file()


def _check_cache() -> None:
    try:
        jars = json.loads(_manifest().read_text())
    except (OSError, ValueError) as exc:
        raise KafkaSetupError(
            f"the Kafka cache {libs_dir()} is broken ({exc}); remove it and run again: "
            f"rm -rf {libs_dir().parent}"
        ) from None
    for name, size in jars.items():
        path = libs_dir() / name
        if not path.is_file() or path.stat().st_size != size:
            raise KafkaSetupError(
                f"the Kafka cache {libs_dir()} is broken ({name} is missing or truncated); "
                f"remove it and run again: rm -rf {libs_dir().parent}"
            )


def ensure_libs(log: bool = True) -> Path:
    """The broker's jars, fetched with Maven on first use; the cache is checked every time."""
    if cache_filled():
        _check_cache()
        return libs_dir()
    if shutil.which("mvn") is None:
        raise KafkaSetupError(
            f"Apache Kafka is not in {libs_dir()} and Maven is missing to fetch it: "
            "install Maven (apt-get install maven) or use the Tansu broker (--kafka tansu)"
        )
    target = libs_dir()
    if log:
        print(f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {target} (once)…")

    def write_manifest(staging: Path) -> None:
        jars = {path.name: path.stat().st_size for path in staging.glob("*.jar")}
        (staging / "manifest.json").write_text(json.dumps(jars, indent=1, sort_keys=True))

    fill_once(
        target,
        lambda staging: [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(DIST_DIR / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ],
        1800,
        lambda tail: KafkaSetupError(f"Maven could not fetch Apache Kafka {KAFKA_VERSION}: {tail}"),
        write_manifest,
    )
    return target


def choose_broker(requested: str | None = None) -> BrokerChoice:
    """`requested` (a flag), else $PEDIDOS_EMBEDDED_KAFKA, else Apache Kafka when it can run."""
    wanted = (requested or os.environ.get(BROKER_ENV) or "auto").strip().lower()
    if wanted not in (*BROKERS, "auto"):
        raise KafkaSetupError(
            f"unknown embedded Kafka {wanted!r}: choose one of apache, tansu, auto ({BROKER_ENV})"
        )
    if wanted == "tansu":
        return BrokerChoice("tansu")
    major = java_major()
    java_ok = major is not None and major >= MIN_JAVA
    fetchable = cache_filled() or shutil.which("mvn") is not None
    if wanted == "apache":
        if not java_ok:
            found = "no java on PATH" if major is None else f"java {major}"
            raise KafkaSetupError(
                f"Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+ ({found}): "
                "install it (apt-get install openjdk-17-jre-headless) or use --kafka tansu"
            )
        return BrokerChoice("apache")
    if java_ok and fetchable:
        return BrokerChoice("apache")
    missing = f"Java {MIN_JAVA}+" if not java_ok else "Maven (to fetch it once)"
    return BrokerChoice(
        "tansu",
        f"Kafka: using Tansu (memory-only) because Apache Kafka needs {missing}; "
        f"install it for the real broker, or set {BROKER_ENV}=tansu to silence this",
    )


def cluster_id() -> str:
    """Kafka's own format: a random UUID in URL-safe base64 without padding, drawn again when it
    starts with "-" as Kafka's `Uuid.randomUuid` does: `kafka-storage format -t -…` reads such an
    id as an option (1 in 64 fresh stacks failed to format)."""
    while (drawn := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))[0] == "-":
        pass
    return drawn


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    """One node that is both broker and controller, sized for a laptop and a test suite."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        # One node: every internal topic has one replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # A group forms as soon as its first member joins (the default waits 3 s).
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "log.retention.hours": "168",
        "log.segment.bytes": str(64 * 1024 * 1024),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def prepare_node(root: Path, port: int, controller_port: int) -> list[str]:
    """Write the node's config, format its storage the first time, return the broker's argv."""
    libs = ensure_libs()
    node_dir = root / "kafka"
    data_dir = node_dir / "data"
    node_dir.mkdir(parents=True, exist_ok=True)
    config = node_dir / "server.properties"
    config.write_text(server_properties(data_dir, port, controller_port))
    java = [
        "java",
        *HEAP,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={DIST_DIR / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
    ]
    if not (data_dir / "meta.properties").exists():
        done = subprocess.run(
            [*java, STORAGE_MAIN, "format", "-t", cluster_id(), "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise KafkaSetupError(f"formatting Kafka storage in {data_dir} failed: {tail[0]}")
    return [*java, BROKER_MAIN, str(config)]


def tool_command(main_class: str, *args: str) -> list[str]:
    """A Kafka command-line tool (kafka-tools) run from the cache, for the bench and tests."""
    return [
        "java",
        "-Xmx512m",
        f"-Dlog4j2.configurationFile={DIST_DIR / 'log4j2.properties'}",
        "-cp",
        f"{ensure_libs(log=False)}/*",
        main_class,
        *args,
    ]
