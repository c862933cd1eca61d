"""The broker figure read from Apache Kafka's own kafka-producer-perf-test output."""

from __future__ import annotations

from bench.limits import parse_summary

OUTPUT = """\
60181 records sent, 12031.8 records/sec (5.63 MB/sec), 1623.6 ms avg latency, 2671.0 ms max latency.
100000 records sent, 15384.6 records/sec (7.20 MB/sec), 1490.34 ms avg latency, 2671.00 ms max \
latency, 1512 ms 50th, 2403 ms 95th, 2583 ms 99th, 2660 ms 99.9th.
"""


def test_the_final_summary_is_read_not_an_interim_line() -> None:
    summary = parse_summary(OUTPUT)
    assert summary == {
        "sent": 100000.0,
        "rate": 15384.6,
        "avg": 1490.34,
        "max": 2671.0,
        "p50": 1512.0,
        "p95": 2403.0,
        "p99": 2583.0,
    }


def test_output_without_a_summary_is_none() -> None:
    assert parse_summary("60181 records sent, 12031.8 records/sec (5.63 MB/sec), 1.0 ms") is None
    assert parse_summary("") is None
