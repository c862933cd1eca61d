"""Command line: one run, sized by a profile (--quick, default, --long) and a few overrides."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

SINKS = ("maildir", "discard")
# Each scenario but the end-to-end run (see Options.e2e_timeout_s) gives up after this long.
SCENARIO_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Timing:
    warmup_s: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class Options:
    """A run's size; the defaults are the default profile's."""

    profile: str = "default"
    levels: tuple[int, ...] = (1, 16, 64)
    timing: Timing = Timing(warmup_s=1.0, duration_s=5.0)
    bulk_orders: int = 50_000
    broker_records: int = 100_000
    mail_emails: int = 5_000
    index_orders: int = 5_000
    orders: int = 5_000
    sinks: tuple[str, ...] = SINKS
    client_processes: int = 2
    keep_data: bool = False
    # End-to-end orders per phase; the data is dropped between phases (see bench/pipeline.py).
    phase_orders: int | None = None
    # Extra environment for the producer and consumer (e.g. SMTP_CONNECTIONS=16).
    service_env: tuple[tuple[str, str], ...] = ()
    # The embedded broker: "apache" or "tansu"; None lets the stack choose (Apache Kafka).
    kafka: str | None = None
    # Each figure is the median of this many runs of every scenario (issue #18: three).
    runs: int = 3
    # "One order alone": orders sent one after the other, each awaited until Finalizado; also
    # the samples of each raw single-operation latency it is judged against.
    alone_orders: int = 200
    # Issue #14: orders in each of the three tracing runs (off, on 100 %, on 10 %).
    tracing_orders: int = 2_000
    # 5d: orders the consumer's own code walks in memory (~1 ms of CPU each).
    own_code_orders: int = 3_000
    # 10: orders sent at a steady 40/s (50 s).
    steady_orders: int = 2_000
    # Only this section of the bench (e.g. "tracing"), not every scenario.
    only: str | None = None

    @property
    def e2e_timeout_s(self) -> float:
        # Generous: 10 orders/s is far below anything worth measuring.
        return 120 + self.orders / 10


PROFILES = {
    "default": Options(),
    "quick": Options(
        profile="quick",
        timing=Timing(warmup_s=0.5, duration_s=2.0),
        bulk_orders=5_000,
        broker_records=20_000,
        mail_emails=1_000,
        index_orders=500,
        orders=500,
        runs=1,
        alone_orders=50,
        tracing_orders=300,
        own_code_orders=500,
        steady_orders=200,
    ),
    # The long run is about memory: one sink (the one that is not the bottleneck) unless asked.
    "long": Options(
        profile="long", orders=100_000, phase_orders=10_000, sinks=("discard",), runs=1
    ),
}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not name.replace("_", "").isalnum():
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return name.upper(), value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the pipeline on an embedded stack it starts on free ports.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke run: 500 orders, short windows")
    size.add_argument(
        "--long",
        action="store_true",
        help="100,000-order end-to-end run (discard sink unless --sinks says otherwise)",
    )
    parser.add_argument("--orders", type=_positive, help="orders in each end-to-end run")
    parser.add_argument(
        "--runs",
        type=_positive,
        help="run every scenario N times and report each figure's median (default 3; "
        "--quick, --long: 1)",
    )
    parser.add_argument(
        "--phase-orders",
        type=_positive,
        help="run the end-to-end orders in phases of this many, dropping the data in between "
        "(--long: 10,000; ignored with --keep-data)",
    )
    parser.add_argument(
        "--sinks",
        choices=("both", *SINKS),
        help="which mail sinks the end-to-end run uses (default: both; --long: discard)",
    )
    parser.add_argument(
        "--client-processes",
        type=_positive,
        help="gRPC client processes sharing the concurrency (default: 2)",
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the Maildir and Elasticsearch data in the temp dir (logs are always kept)",
    )
    parser.add_argument(
        "--service-env",
        type=_assignment,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra setting for the producer and consumer, e.g. SMTP_CONNECTIONS=16 (repeatable)",
    )
    parser.add_argument(
        "--only",
        choices=("tracing", "own-code", "steady", "alone", "e2e", "producer"),
        help="run only this section: tracing = issue #14's CPU per order with tracing off, "
        "on at 100 %% and on at 10 %% sampling; own-code = the consumer's own code in memory "
        "(5d); steady = the consumer's CPU per order with orders arriving at 40/s (10); "
        "alone = one order alone (8) beside its limit's parts (4, 5, 5c); e2e = the end-to-end "
        "runs (6, 7) beside their limits (5, 5b), with issue #18's consumer and rate figures; "
        "producer = the gRPC scenarios (1-3) with issue #18's producer figures",
    )
    parser.add_argument(
        "--kafka",
        choices=("apache", "tansu"),
        help="embedded broker (default: Apache Kafka when Java 17+ can run it, else Tansu)",
    )
    return parser


def parse_options(argv: list[str] | None = None) -> Options:
    args = _parser().parse_args(argv)
    options = PROFILES["quick" if args.quick else "long" if args.long else "default"]
    sinks = SINKS if args.sinks == "both" else (args.sinks,)
    overrides = {
        "orders": args.orders,
        "phase_orders": args.phase_orders,
        "sinks": sinks if args.sinks else None,
        "client_processes": args.client_processes,
        "runs": args.runs,
    }
    return replace(
        options,
        **{name: value for name, value in overrides.items() if value},
        keep_data=args.keep_data,
        service_env=tuple(args.service_env),
        kafka=args.kafka,
        only=args.only,
    )
