"""Scenario 4b: the broker limit measured by a peer nobody here wrote — Apache Kafka's own
`kafka-producer-perf-test` (kafka-tools, Java client), same record size, same producer settings
as the services (acks=all, idempotent, lz4, linger 2 ms)."""

from __future__ import annotations

import re
import subprocess
import time

from bench.figures import Figure
from bench.options import SCENARIO_TIMEOUT_S
from devkit.apache_kafka import PRODUCER_PERF_MAIN, tool_command
from devkit.topics import topic_size
from pedidos.runtime.config import Settings

# "100000 records sent, 81234.5 records/sec (8.12 MB/sec), 12.30 ms avg latency, 200.00 ms max
# latency, 10 ms 50th, 30 ms 95th, 50 ms 99th, 90 ms 99.9th."
_SUMMARY = re.compile(
    r"(?P<sent>\d+) records sent, (?P<rate>[\d.]+) records/sec \([\d.]+ MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th"
)


def parse_summary(output: str) -> dict[str, float] | None:
    """The tool's last summary line (it also prints interim ones every 5 s), or None."""
    found = list(_SUMMARY.finditer(output))
    if not found:
        return None
    return {name: float(value) for name, value in found[-1].groupdict().items()}


def _command(bootstrap: str, topic: str, count: int, record_size: int) -> list[str]:
    return tool_command(
        PRODUCER_PERF_MAIN,
        *("--topic", topic, "--num-records", str(count), "--record-size", str(record_size)),
        *("--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}"),
        *("acks=all", "enable.idempotence=true", "linger.ms=2", "compression.type=lz4"),
        "client.id=pedidos-bench-perf-test",
    )


def measure_perf_test(
    figure: Figure, settings: Settings, count: int, record_size: int, watermarks_exact: bool
) -> None:
    bootstrap, topic = settings.kafka_bootstrap_servers, settings.pedidos_topic
    argv = _command(bootstrap, topic, count, record_size)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        figure.refuse([f"kafka-producer-perf-test did not finish in {SCENARIO_TIMEOUT_S:.0f}s"])
        return
    summary = parse_summary(done.stdout)
    if done.returncode != 0 or summary is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        figure.refuse([f"kafka-producer-perf-test exited {done.returncode}: {tail[0]}"])
        return
    figure.value = summary["rate"]
    figure.details = {
        "records": count,
        "record_size": record_size,
        "avg_latency_ms": summary["avg"],
        "p50_ms": summary["p50"],
        "p95_ms": summary["p95"],
        "p99_ms": summary["p99"],
        # The JVM's start is in here, not in the rate the tool reports.
        "wall_s": round(time.perf_counter() - started, 1),
    }
    problems = []
    if int(summary["sent"]) != count:
        problems.append(f"the tool sent {int(summary['sent'])} of {count} records")
    if watermarks_exact:
        stored = topic_size(bootstrap, topic, settings.kafka_topic_partitions)
        figure.details["records_on_topic"] = stored
        if stored != count:
            problems.append(f"the topic holds {stored} records, not {count}")
    else:
        figure.notes.append("records on the topic not checked: this broker's end offsets are wrong")
    figure.refuse(problems)
