"""Scenarios 6 and 7: orders/s from the first CreateOrder to the last order Finalizado with all
its e-mails (beside the mail limit), and the producer's and consumer's memory meanwhile.

Scenario 9 (issue #14), what tracing costs: the consumer's CPU per order (5 states, stage delays
0, discard sink) of the same runs with tracing off, on with every order sampled, and on with one
in ten, beside each other; the producer's CPU per order in the notes. The services export to an
OTLP receiver in the bench process that only counts what arrives (decoding it would load the
machine being measured)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.checks import PipelineCounts, inbox_problems, pipeline_problems
from bench.environment import BenchStack, MailSink, PipelineProbe
from bench.figures import Figure, Requirement, at_least_times, rounded
from bench.load import LoadResult, LoadSpec
from bench.logscan import LogFindings, Pace, consumer_pace, scan_log
from bench.options import Options
from bench.resources import (
    MB,
    CpuMeter,
    CpuUsage,
    RssSampler,
    bottleneck,
    cpu_ms_per_unit,
    growth,
    rss_profile,
)
from bench.step_phases import StepPhases, scrape, step_phases
from bench.workers import LoadWorkers, fan_out
from devkit.inbox import Inbox
from devkit.net import free_ports
from devkit.otlp_receiver import OtlpReceiver
from devkit.processes import ServiceError, ServiceProcess, Services
from devkit.scenario import prepare
from pedidos.runtime.config import Settings

SEND_CONCURRENCY = 64
SETTLE_S = 1.5  # after completion, time for any duplicate e-mail or document to show up
VERIFY_RETRY_S = 10.0
POLL_S = 0.2
ORIGINAL = 77.0  # orders/s of the original system (69-77), the 10x goal's base
RSS_LIMIT_MB = 200.0
FLAT_GROWTH = 0.10  # at most 10 % growth between the middle and the end of the run

Report = Callable[[str], None]


@dataclass
class PipelineRun:
    sink: MailSink
    orders: int
    started_at: float = 0.0
    detected_at: float | None = None  # when the bench saw the run complete
    problems: list[str] = field(default_factory=list)
    sent: LoadResult = field(default_factory=LoadResult)  # every phase's
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
    step_phases: StepPhases | None = None  # from the consumer's /metrics

    @property
    def finished_at(self) -> float | None:
        """The last order's Finalizado as the consumer logged it (after its ES write): exact to
        the millisecond, where detection is only as fine as the polling."""
        last = self.pace.last_finalizado_at if self.pace else None
        if last is None or self.detected_at is None or last <= self.started_at:
            return self.detected_at
        return min(last, self.detected_at)  # never later than the bench saw it

    @property
    def elapsed_s(self) -> float | None:
        end = self.finished_at
        return None if end is None else end - self.started_at - self.paused_s

    @property
    def rate(self) -> float | None:
        """Orders/s from the first order sent to the last one Finalizado."""
        return self.orders / self.elapsed_s if self.elapsed_s else None

    @property
    def send_rate(self) -> float | None:
        end = self.sent.last_done_at
        if end is None or end <= self.started_at:
            return None
        return self.sent.completed / (end - self.started_at)

    def add_counts(self, counts: PipelineCounts, reads: int) -> None:
        """Add one phase's tally to the run's."""
        self.counts["reads"] = self.counts.get("reads", 0) + reads
        for key, value in asdict(counts).items():
            if isinstance(value, dict):
                self.counts.setdefault(key, Counter()).update(value)
            else:  # None: the sink keeps no mail to count
                self.counts[key] = None if value is None else self.counts.get(key, 0) + value


def phase_sizes(orders: int, phase_orders: int | None) -> list[int]:
    """`orders` in phases of at most `phase_orders` (one phase when None)."""
    size = phase_orders or orders
    return [min(size, orders - start) for start in range(0, orders, size)]


def run_pipeline(
    stack: BenchStack,
    sink: MailSink,
    workers: LoadWorkers,
    options: Options,
    report: Report,
    variant: Mapping[str, str] | None = None,
    tag: str | None = None,
) -> PipelineRun:
    """One producer and one consumer for the whole run; the orders go in phases.

    Between phases the bench verifies what the phase did, then drops the indices (and the
    Maildir's messages): noida-db keeps every document in memory and slows down as it fills,
    so a 100,000-order run in one piece measures noida-db, not the services. The services
    keep running, so their memory is still that of the whole run; the pauses between phases
    are left out of the elapsed time. `variant`: service settings of this run only (e.g.
    CONSUMER_WORKERS=2), also in its topics' and logs' names unless `tag` names the run (for
    values no topic name can hold, such as URLs)."""
    run = PipelineRun(sink, options.orders)
    variant = variant or {}
    # The variant first: a name extending another scenario's would match its index templates.
    name = tag or "".join(f"{k.lower()}{v}-" for k, v in variant.items()) + sink.name
    env = stack.scenario_env(f"e2e-{name}", sink, variant)
    prepare(env)
    services = Services(env, stack.logs, tied=True)
    probe: PipelineProbe | None = None
    consumer_workers = int(env.get("CONSUMER_WORKERS", "1"))
    metrics_port = free_ports(consumer_workers)
    try:
        # Started in this order, stopped and reported in this order.
        services.producer(log_name=f"producer-e2e-{name}")
        consumer = services.consumer(
            log_name=f"consumer-e2e-{name}", METRICS_PORT=str(metrics_port)
        )
        probe = PipelineProbe(env, sink, consumer.log_path)
        session = _Session(run, stack, env, services.started, probe, workers, report)
        phases = phase_sizes(options.orders, None if stack.keep_data else options.phase_orders)
        session.send_all(phases, time.monotonic() + options.e2e_timeout_s)
        run.step_phases = _step_phases(env, metrics_port, consumer_workers, report)
    finally:
        if probe is not None:
            probe.close()
            run.es_polls = probe.poll_seconds
        run.exit_codes = {p.module: p.stop(kill_late=True) for p in services.started}
        stack.release(env)
        run.logs = [scan_log(p.log_path) for p in services.started]  # producer, consumer
        paces = [consumer_pace(p.log_path) for p in services.started if p.module == "consumer"]
        run.pace = paces[0] if paces else None
    return run


def _step_phases(
    env: Mapping[str, str], port: int, workers: int, report: Report
) -> StepPhases | None:
    """The consumer's step phases over the run (None, and a line saying why, if unreadable)."""
    default = Settings.model_fields["consumer_max_unrecorded_emails"].default
    slots = int(env.get("CONSUMER_MAX_UNRECORDED_EMAILS", default))
    try:
        return step_phases(scrape(port, workers), slots, workers)
    except OSError as exc:
        report(f"  the consumer's /metrics could not be read: {exc}")
        return None


@dataclass
class _Session:
    """One end-to-end run's services, probe and client processes, phase by phase."""

    run: PipelineRun
    stack: BenchStack
    env: dict[str, str]
    services: list[ServiceProcess]  # the producer, the consumer
    probe: PipelineProbe
    workers: LoadWorkers
    report: Report

    def send_all(self, phases: list[int], deadline: float) -> None:
        """Every phase's orders sent and awaited; CPU over the run, RSS sampled meanwhile."""
        pids = {service.module: service.pid for service in self.services}
        services = {name: [pid] for name, pid in pids.items()}
        meter = CpuMeter({**services, "client": self.workers.pids, **self.stack.pids()})
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
            prepare(self.env)
            run.sink.clear()
        phase_started = time.time() + 0.5
        if not number:
            run.started_at = phase_started
        else:
            run.paused_s += phase_started - (run.detected_at or phase_started)
            self.report(f"  phase {number + 1}/{phases}: {count:,} orders")
        prefix = f"{self.stack.run_id}-e2e-{run.sink.name}-{number}"
        address = self.env["GRPC_LISTEN"]
        template = LoadSpec(
            "create", address, SEND_CONCURRENCY, phase_started, count=count, key_prefix=prefix
        )
        specs = fan_out(template, self.workers.size, seed=100)
        self.probe.start_phase()
        self.workers.submit(specs)
        time.sleep(max(phase_started - time.time(), 0))

    def _finish_phase(self, count: int, deadline: float, label: str) -> bool:
        """Wait for one phase's orders and verify them; False when the run cannot go on."""
        run = self.run
        run.detected_at = None
        try:
            run.detected_at = self._wait_complete(count, deadline)
        except ServiceError as exc:
            run.problems.append(f"{label}{exc}")
        except KeyboardInterrupt:
            # Report what was measured (as FAILED), then let the bench stop.
            run.interrupted = True
            elapsed = time.time() - run.started_at
            run.problems.append(f"{label}interrupted after {elapsed:.0f}s: {self._progress(count)}")
            return False
        sent = self.workers.collect(60)
        run.sent.absorb(sent)
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
            for service in self.services:
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
                self.report(f"  {self._progress(orders, emails)}")
                next_report = now + 10
            if now > deadline:
                raise ServiceError(
                    f"timed out: {emails:,}/{5 * orders:,} e-mails, "
                    f"{finalizado:,}/{orders:,} Finalizado in ES"
                )
            time.sleep(POLL_S)

    def _progress(self, orders: int, emails: int | None = None) -> str:
        """How far a phase of `orders` got (`emails`: when just read)."""
        emails = self.probe.emails() if emails is None else emails
        logged = self.probe.logged()["finalizado"]
        return f"{emails:,}/{5 * orders:,} e-mails, {logged:,}/{orders:,} logged Finalizado"

    def _verify(self, orders: int, sent: LoadResult, label: str) -> None:
        counts, reads = _settled_counts(orders, self.probe)
        self.run.add_counts(counts, reads)
        problems = pipeline_problems(orders, counts)
        distinct = len(set(sent.order_ids))
        errors = sum(sent.errors.values())
        if errors or distinct != orders:
            accepted = f"{distinct} distinct orders accepted of {orders}"
            problems.append(f"{accepted}, {errors} calls failed")
        if self.run.sink.maildir is not None:
            states = Inbox(self.run.sink.maildir).states_by_order(sent.order_ids)
            problems += inbox_problems(sent.order_ids, states)
        self.run.phases.append({"orders": orders, "reads": reads, "problems": len(problems)})
        self.run.problems += [f"{label}{problem}" for problem in problems]


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


def _cpu_ms(run: PipelineRun, name: str) -> float | None:
    """`name`'s CPU seconds over the run (all its processes) per order (issue #18, #14)."""
    return cpu_ms_per_unit(run.cpu, name, run.orders)


def e2e_figure(
    figure: Figure, run: PipelineRun, mail_limit: Figure | None, index_limit: Figure | None
) -> None:
    """Orders/s from the first order sent to the last one Finalizado, beside the mail limit."""
    limit = mail_limit.value / 5 if mail_limit and mail_limit.value is not None else None
    figure.value = value = run.rate
    figure.limit = limit
    figure.limit_label = f"mail limit ({run.sink.name}) ÷ 5"
    figure.requirements = [at_least_times("orders/s", value, limit, 0.8)]
    if run.sink.maildir is None:
        figure.requirements.append(Requirement("orders/s (10× original)", value, 10 * ORIGINAL))
    detected_after = None if run.detected_at is None else run.detected_at - run.started_at
    figure.notes += _e2e_notes(run, index_limit)
    figure.details = {
        "orders": run.orders,
        "elapsed_s": rounded(run.elapsed_s),
        "detected_after_s": rounded(detected_after),
        "send_rate": rounded(run.send_rate, 1),
        "counts": run.counts,
        "cpu": run.cpu.to_json() if run.cpu else None,
        "exit_codes": run.exit_codes,
        "pace": None if run.pace is None else asdict(run.pace),
        "es_poll_max_s": round(max(run.es_polls), 3) if run.es_polls else None,
        "phases": run.phases,
        "paused_s": round(run.paused_s, 3),
        "consumer_cpu_ms_per_order": rounded(_cpu_ms(run, "consumer")),
        "step_phases": None if run.step_phases is None else run.step_phases.to_json(),
    }
    if run.cpu is not None:
        figure.foreign_cores = run.cpu.other
        name, cores, verdict = bottleneck(run.cpu)
        figure.details["bottleneck"] = {
            "process": name,
            "cores": round(cores, 3),
            "verdict": verdict,
        }
        figure.notes.append(f"bottleneck: {verdict}")
    figure.refuse(run.problems)


def _e2e_notes(run: PipelineRun, index_limit: Figure | None) -> list[str]:
    notes = []
    if run.send_rate is not None:
        notes.append(f"sent at c={SEND_CONCURRENCY}: {run.send_rate:,.0f} orders/s")
    if run.cpu is not None:
        notes.append(run.cpu.describe())
        per_order = _cpu_ms(run, "consumer")
        if per_order is not None:
            notes.append(f"consumer CPU {per_order:.2f} ms per order (5 states)")
    if index_limit is not None and index_limit.value is not None:
        notes.append(f"index limit (same run): {index_limit.value:,.0f} orders/s")
    if run.step_phases is not None:
        notes.append(run.step_phases.describe())
    if run.pace is not None:
        notes.append(run.pace.describe())
    if len(run.phases) > 1:
        notes.append(
            f"{len(run.phases)} phases of ≤ {max(p['orders'] for p in run.phases):,} orders, "
            f"data dropped in between; {run.paused_s:.0f}s of pauses not counted"
        )
    if run.es_polls:
        notes.append(
            f"bench's ES polls (refresh + count): {len(run.es_polls)}, "
            f"mean {sum(run.es_polls) / len(run.es_polls):.2f}s, max {max(run.es_polls):.2f}s"
        )
    unclean = {name: code for name, code in run.exit_codes.items() if code != 0}
    if unclean:
        notes.append(f"unclean exit (None = killed): {unclean}")
    return notes


def _mb(value: int | None) -> str:
    return "?" if value is None else f"{value / MB:.0f}"


def rss_figures(run: PipelineRun) -> list[Figure]:
    figures = []
    for name in ("producer", "consumer"):
        profile = run.rss.get(name, {})
        peak = profile.get("peak")
        peak_mb = None if peak is None else peak / MB
        grew = growth(profile.get("p50"), profile.get("p100"))
        grew_pct = None if grew is None else grew * 100
        shown = "/".join(_mb(profile.get(k)) for k in ("p10", "p50", "p100"))
        figure = Figure(
            key=f"rss.{name}.{run.sink.name}",
            scenario="7 Memory",
            label=f"{name} peak RSS ({run.orders:,} orders, {run.sink.name})",
            unit="MB",
            value=peak_mb,
            requirements=[
                Requirement("peak MB", peak_mb, RSS_LIMIT_MB, at_least=False),
                Requirement("growth 50→100 %", grew_pct, FLAT_GROWTH * 100, at_least=False),
            ],
            notes=[f"RSS at 10/50/100 % of the run: {shown} MB"],
            details=dict(profile),
            foreign_cores=run.cpu.other if run.cpu else None,
        )
        if run.finished_at is None or run.problems:
            # The profile stays in details: a run cut short still shows how memory grew.
            figure.refuse(["end-to-end run incomplete or incorrect; memory not reported"])
        figures.append(figure)
    return figures


# -- 9: tracing's cost (issue #14) -----------------------------------------------------------
TRACING = "9 Tracing (#14)"
# key, label, sampling ratio (None: tracing off).
TRACING_VARIANTS: tuple[tuple[str, str, float | None], ...] = (
    ("off", "tracing off", None),
    ("on100", "tracing on, 100 % sampled", 1.0),
    ("on10", "tracing on, 10 % sampled", 0.1),
)


def tracing_env(receiver: OtlpReceiver, ratio: float | None) -> dict[str, str]:
    """The services' tracing settings: nothing at all when off (the default). Sampled at the
    root (the producer's server span); the consumer follows the traceparent's decision, so an
    order is traced whole or not at all."""
    return {} if ratio is None else receiver.env("parentbased_traceidratio", ratio, prompt=False)


def tracing_figure(figure: Figure, run: PipelineRun, exported_bytes: int) -> None:
    """The consumer's CPU per order as the value; the producer's and the rate in the notes."""
    figure.value = consumer = _cpu_ms(run, "consumer")
    producer, rate = _cpu_ms(run, "producer"), run.rate
    if run.cpu is not None:
        figure.foreign_cores = run.cpu.other
    figure.details = {
        "orders": run.orders,
        "consumer_cpu_ms_per_order": rounded(consumer),
        "producer_cpu_ms_per_order": rounded(producer),
        "orders_per_s": rounded(rate, 1),
        "exported_bytes": exported_bytes,
        "cpu": run.cpu.to_json() if run.cpu else None,
    }
    shown = [f"{run.orders:,} orders"]
    if rate is not None:
        shown.append(f"{rate:,.0f} orders/s")
    if producer is not None:
        shown.append(f"producer {producer:.3f} ms/order")
    shown.append(f"{exported_bytes / max(run.orders, 1):,.0f} bytes of spans exported per order")
    figure.notes.append("; ".join(shown))
    figure.refuse(run.problems)
