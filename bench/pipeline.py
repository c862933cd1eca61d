"""Scenarios 6 and 7: orders/s from the first CreateOrder to the last order Finalizado with all
its e-mails, and the producer's and consumer's memory meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.checks import PipelineCounts, inbox_problems, pipeline_problems
from bench.environment import BenchStack, MailSink
from bench.load import LoadResult, LoadSpec
from bench.logscan import LogFindings, Pace, consumer_pace, scan_log
from bench.probe import PipelineProbe
from bench.resources import CpuMeter, CpuUsage, RssSampler, rss_profile
from bench.workers import LoadWorkers, fan_out, split
from devkit.inbox import Inbox
from devkit.processes import ServiceError, ServiceProcess, Services

SEND_CONCURRENCY = 64
SETTLE_S = 1.5  # after completion, time for any duplicate e-mail or document to show up
VERIFY_RETRY_S = 10.0
POLL_S = 0.2

Report = Callable[[str], None]


@dataclass
class PipelineRun:
    sink: MailSink
    orders: int
    started_at: float = 0.0
    detected_at: float | None = None  # when the bench saw the run complete
    finished_at: float | None = None  # when it did complete
    problems: list[str] = field(default_factory=list)
    sent: list[LoadResult] = field(default_factory=list)
    cpu: CpuUsage | None = None
    rss: dict[str, dict[str, int | None]] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    logs: list[LogFindings] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    pace: Pace | None = None
    es_polls: list[float] = field(default_factory=list)
    interrupted: bool = False
    paused_s: float = 0.0  # between phases: verifying and dropping data, not measured
    phases: list[dict[str, int]] = field(default_factory=list)

    @property
    def elapsed_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at - self.paused_s

    def add_counts(self, counts: PipelineCounts, reads: int) -> None:
        """Add one phase's tally to the run's."""
        self.counts["reads"] = self.counts.get("reads", 0) + reads
        for key in PipelineCounts.__slots__:
            value = getattr(counts, key)
            if isinstance(value, Mapping):
                totals = self.counts.setdefault(key, {})
                for state, n in value.items():
                    totals[state] = totals.get(state, 0) + n
            elif value is not None:
                self.counts[key] = self.counts.get(key, 0) + value
            else:
                self.counts.setdefault(key, None)


def phase_sizes(orders: int, phase_orders: int | None) -> list[int]:
    """`orders` in phases of at most `phase_orders` (one phase when None)."""
    size = phase_orders or orders
    return [min(size, orders - start) for start in range(0, orders, size)]


def run_pipeline(
    stack: BenchStack,
    sink: MailSink,
    orders: int,
    workers: LoadWorkers,
    timeout_s: float,
    report: Report,
    phase_orders: int | None = None,
) -> PipelineRun:
    """One producer and one consumer for the whole run; the orders go in phases.

    Between phases the bench verifies what the phase did, then drops the indices (and the
    Maildir's messages): noida-db keeps every document in memory and slows down as it fills,
    so a 100,000-order run in one piece measures noida-db, not the services. The services
    keep running, so their memory is still that of the whole run; the pauses between phases
    are left out of the elapsed time."""
    run = PipelineRun(sink, orders)
    env = stack.scenario_env(f"e2e-{sink.name}", sink)
    stack.prepare(env)
    services = Services(env, stack.logs, tied=True)
    session: _Session | None = None
    try:
        session = _Session.start(run, stack, env, services, workers, report)
        session.send_all(
            phase_sizes(orders, None if stack.keep_data else phase_orders),
            time.monotonic() + timeout_s,
        )
    finally:
        if session is not None:
            session.probe.close()
            run.es_polls = session.probe.poll_seconds
        run.exit_codes = {p.module: p.stop(kill_late=True) for p in services.started}
        stack.release(env)
        by_module = {p.module: p.log_path for p in services.started}
        run.logs = [scan_log(by_module[m]) for m in ("producer", "consumer") if m in by_module]
        run.pace = consumer_pace(by_module["consumer"]) if "consumer" in by_module else None
        run.finished_at = _finished_at(run)
    return run


@dataclass
class _Session:
    """One end-to-end run's services, probe and client processes, phase by phase."""

    run: PipelineRun
    stack: BenchStack
    env: dict[str, str]
    producer: ServiceProcess
    consumer: ServiceProcess
    probe: PipelineProbe
    workers: LoadWorkers
    report: Report

    @classmethod
    def start(
        cls,
        run: PipelineRun,
        stack: BenchStack,
        env: dict[str, str],
        services: Services,
        workers: LoadWorkers,
        report: Report,
    ) -> _Session:
        """The producer and the consumer, up and holding partitions; the probe watching them."""
        # Started in this order, stopped and reported in this order.
        producer = services.producer(log_name=f"producer-e2e-{run.sink.name}")
        consumer = services.consumer(log_name=f"consumer-e2e-{run.sink.name}")
        probe = PipelineProbe(
            stack.elasticsearch_url,
            env["ELASTICSEARCH_EVENTS_INDEX"],
            env["ELASTICSEARCH_ORDERS_INDEX"],
            run.sink,
            consumer.log_path,
        )
        return cls(run, stack, env, producer, consumer, probe, workers, report)

    def send_all(self, phases: list[int], deadline: float) -> None:
        """Every phase's orders sent and awaited; CPU over the run, RSS sampled meanwhile."""
        shares = split(SEND_CONCURRENCY, self.workers.size)
        pids = {"producer": self.producer.pid, "consumer": self.consumer.pid}
        meter = CpuMeter(
            {
                **{name: [pid] for name, pid in pids.items()},
                "client": self.workers.pids[: len(shares)],
                **{name: [pid] for name, pid in self.stack.pids().items()},
            }
        )
        with RssSampler(pids) as sampler:
            for number, count in enumerate(phases):
                self._start_phase(number, count, len(phases))
                if not number:
                    meter.start()
                label = f"phase {number + 1}/{len(phases)}: " if len(phases) > 1 else ""
                if not self._finish_phase(count, deadline, label):
                    break
            self.run.cpu = meter.stop()
        end = self.run.detected_at or time.time()
        self.run.rss = {
            name: rss_profile(sampler.samples, name, self.run.started_at, end) for name in pids
        }

    def _start_phase(self, number: int, count: int, phases: int) -> None:
        """Drop the previous phase's data, then hand this phase's orders to the client
        processes; returns when they start sending."""
        run = self.run
        if number:
            self.stack.release(self.env)
            self.stack.prepare(self.env)
            run.sink.clear()
        phase_started = time.time() + 0.5
        if not number:
            run.started_at = phase_started
        else:
            run.paused_s += phase_started - (run.detected_at or phase_started)
            self.report(f"  phase {number + 1}/{phases}: {count:,} orders")
        template = LoadSpec(
            kind="create",
            address=self.env["GRPC_LISTEN"],
            concurrency=SEND_CONCURRENCY,
            start_at=phase_started,
            count=count,
            key_prefix=f"{self.stack.run_id}-e2e-{run.sink.name}-{number}",
        )
        specs = fan_out(template, self.workers.size, seed=100)
        self.probe.start_phase()
        self.workers.submit(specs)
        time.sleep(max(phase_started - time.time(), 0))

    def _finish_phase(self, count: int, deadline: float, label: str) -> bool:
        """Wait for one phase's orders and verify them; False when the run cannot go on."""
        run, probe = self.run, self.probe
        run.detected_at = None
        try:
            run.detected_at = self._wait_complete(count, deadline)
        except ServiceError as exc:
            run.problems.append(f"{label}{exc}")
        except KeyboardInterrupt:
            # Report what was measured (as FAILED), then let the bench stop.
            run.interrupted = True
            run.problems.append(
                f"{label}interrupted after {time.time() - run.started_at:.0f}s: "
                f"{probe.emails():,}/{5 * count:,} e-mails, "
                f"{probe.logged()['finalizado']:,}/{count:,} logged Finalizado"
            )
            return False
        sent = self.workers.collect(60)
        run.sent += sent
        if run.detected_at is None:
            return False
        self._verify(count, sent, label)
        return not run.problems

    def _wait_complete(self, orders: int, deadline: float) -> float:
        """Poll until every order is Finalizado in ES with its 5 e-mails; when that was seen.

        E-mails come from the inbox (or the consumer's log); ES is only asked once all of them
        are out, since an order's Finalizado document is written after its last e-mail:
        refreshing a busy index every second would slow down what is measured. Each poll waits
        at least ten times as long as the previous one took, so reading a huge Maildir stays
        cheap."""
        finalizado = emails = 0
        next_inbox = next_report = time.monotonic()
        while True:
            for service in (self.producer, self.consumer):
                if not service.running:
                    raise ServiceError(f"{service.module} exited mid-run; see {service.log_path}")
            now = time.monotonic()
            if now >= next_inbox:
                emails = self.probe.emails()
                next_inbox = now + max(POLL_S, 10 * (time.monotonic() - now))
            if emails >= 5 * orders:
                finalizado = self.probe.finalizado()
                if finalizado >= orders:
                    return time.time()
            if now >= next_report:
                logged = self.probe.logged()["finalizado"]
                self.report(
                    f"  {emails:,}/{5 * orders:,} e-mails, {logged:,}/{orders:,} logged Finalizado"
                )
                next_report = now + 10
            if now > deadline:
                raise ServiceError(
                    f"timed out: {emails:,}/{5 * orders:,} e-mails, "
                    f"{finalizado:,}/{orders:,} Finalizado in ES"
                )
            time.sleep(POLL_S)

    def _verify(self, orders: int, sent: list[LoadResult], label: str) -> None:
        counts, reads = _settled_counts(orders, self.probe)
        self.run.add_counts(counts, reads)
        problems = pipeline_problems(orders, counts)
        order_ids = [order_id for result in sent for order_id in result.order_ids]
        errors = sum(sum(r.errors.values()) for r in sent)
        if errors or len(set(order_ids)) != orders:
            problems.append(
                f"{len(set(order_ids))} distinct orders accepted of {orders}, {errors} calls failed"
            )
        if self.run.sink.maildir is not None:
            states = Inbox(self.run.sink.maildir).states_by_order(order_ids)
            problems += inbox_problems(order_ids, states)
        self.run.phases.append({"orders": orders, "reads": reads, "problems": len(problems)})
        self.run.problems += [f"{label}{problem}" for problem in problems]


def _finished_at(run: PipelineRun) -> float | None:
    """The last order's Finalizado as the consumer logged it (after its ES write): exact to
    the millisecond, where detection is only as fine as the polling."""
    if run.detected_at is None:
        return None
    last = run.pace.last_finalizado_at if run.pace else None
    if last is None or not run.started_at < last <= run.detected_at:
        return run.detected_at
    return last


def _settled_counts(orders: int, probe: PipelineProbe) -> tuple[PipelineCounts, int]:
    """The final tally and how many reads it took; re-read for a while, since noida-db once
    answered a stale count."""
    time.sleep(SETTLE_S)
    deadline = time.monotonic() + VERIFY_RETRY_S
    reads = 0
    while True:
        counts = probe.counts()
        reads += 1
        if not pipeline_problems(orders, counts) or time.monotonic() > deadline:
            return counts, reads
        time.sleep(1)
