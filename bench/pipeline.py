"""Scenarios 6 and 7: orders/s from the first CreateOrder to the last order Finalizado with all
its e-mails, and the producer's and consumer's memory meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.checks import PipelineCounts, inbox_problems, pipeline_problems
from bench.environment import BenchStack, MailSink
from bench.inbox import states_by_order
from bench.load import LoadResult, LoadSpec
from bench.logscan import LogFindings, Pace, consumer_pace, scan_log
from bench.probe import PipelineProbe
from bench.resources import CpuMeter, CpuUsage, RssSampler, rss_profile
from bench.services import ServiceError, ServiceProcess
from bench.workers import LoadWorkers, split

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


def _wait_complete(
    probe: PipelineProbe,
    orders: int,
    deadline: float,
    services: list[ServiceProcess],
    report: Report,
) -> float:
    """Poll until every order is Finalizado in ES with its 5 e-mails; when that was seen.

    E-mails come from the inbox (or the consumer's log); ES is only asked once all of them are
    out, since an order's Finalizado document is written after its last e-mail: refreshing a
    busy index every second would slow down what is measured. Each poll waits at least ten
    times as long as the previous one took, so reading a huge Maildir stays cheap."""
    finalizado = emails = 0
    next_inbox = next_report = time.monotonic()
    while True:
        for service in services:
            if not service.running:
                raise ServiceError(f"{service.module} exited mid-run; see {service.log_path}")
        now = time.monotonic()
        if now >= next_inbox:
            emails = probe.emails()
            next_inbox = now + max(POLL_S, 10 * (time.monotonic() - now))
        if emails >= 5 * orders:
            finalizado = probe.finalizado()
            if finalizado >= orders:
                return time.time()
        if now >= next_report:
            logged = probe.logged()["finalizado"]
            report(f"  {emails:,}/{5 * orders:,} e-mails, {logged:,}/{orders:,} logged Finalizado")
            next_report = now + 10
        if now > deadline:
            raise ServiceError(
                f"timed out: {emails:,}/{5 * orders:,} e-mails, "
                f"{finalizado:,}/{orders:,} Finalizado in ES"
            )
        time.sleep(POLL_S)


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
    scenario = f"e2e-{sink.name}"
    env = stack.scenario_env(scenario, sink)
    stack.prepare(env)
    producer = ServiceProcess("producer", env, stack.logs / f"producer-{scenario}.log").start()
    consumer = ServiceProcess("consumer", env, stack.logs / f"consumer-{scenario}.log").start()
    probe = PipelineProbe(
        stack.elasticsearch_url,
        env["ELASTICSEARCH_EVENTS_INDEX"],
        env["ELASTICSEARCH_ORDERS_INDEX"],
        sink,
        consumer.log_path,
    )
    phases = phase_sizes(orders, None if stack.keep_data else phase_orders)
    try:
        producer.wait_healthy(env["GRPC_LISTEN"], 30)
        consumer.wait_log(
            "partitions assigned", 60, processes=int(env.get("CONSUMER_WORKERS", "1"))
        )
        shares = split(SEND_CONCURRENCY, workers.size)
        meter = CpuMeter(
            {
                "producer": [producer.pid],
                "consumer": [consumer.pid],
                "client": workers.pids[: len(shares)],
                **{name: [pid] for name, pid in stack.pids().items()},
            }
        )
        deadline = time.monotonic() + timeout_s
        services = [producer, consumer]
        with RssSampler({"producer": producer.pid, "consumer": consumer.pid}) as sampler:
            for number, count in enumerate(phases):
                if number:
                    _between_phases(stack, env, sink)
                phase_started = time.time() + 0.5
                if not number:
                    run.started_at = phase_started
                else:
                    run.paused_s += phase_started - (run.detected_at or phase_started)
                    report(f"  phase {number + 1}/{len(phases)}: {count:,} orders")
                specs = [
                    LoadSpec(
                        kind="create",
                        address=env["GRPC_LISTEN"],
                        concurrency=share,
                        start_at=phase_started,
                        count=part,
                        seed=100 + index,
                        key_prefix=f"{stack.run_id}-{scenario}-{number}-{index}",
                    )
                    for index, (share, part) in enumerate(
                        zip(shares, split(count, len(shares)), strict=True)
                    )
                ]
                probe.start_phase()
                workers.submit(specs)
                time.sleep(max(phase_started - time.time(), 0))
                if not number:
                    meter.start()
                label = f"phase {number + 1}/{len(phases)}: " if len(phases) > 1 else ""
                if not _run_phase(run, probe, workers, count, deadline, services, report, label):
                    break
            run.cpu = meter.stop()
        end = run.detected_at or time.time()
        for name in ("producer", "consumer"):
            run.rss[name] = rss_profile(sampler.samples, name, run.started_at, end)
    finally:
        probe.close()
        run.es_polls = probe.poll_seconds
        run.exit_codes = {"producer": producer.stop(), "consumer": consumer.stop()}
        stack.release(env)
        run.logs = [scan_log(producer.log_path), scan_log(consumer.log_path)]
        run.pace = consumer_pace(consumer.log_path)
        run.finished_at = _finished_at(run)
    return run


def _run_phase(
    run: PipelineRun,
    probe: PipelineProbe,
    workers: LoadWorkers,
    count: int,
    deadline: float,
    services: list[ServiceProcess],
    report: Report,
    label: str,
) -> bool:
    """Wait for one phase's orders and verify them; False when the run cannot go on."""
    run.detected_at = None
    try:
        run.detected_at = _wait_complete(probe, count, deadline, services, report)
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
    sent = workers.collect(60)
    run.sent += sent
    if run.detected_at is None:
        return False
    _verify(run, probe, count, sent, label)
    return not run.problems


def _between_phases(stack: BenchStack, env: dict[str, str], sink: MailSink) -> None:
    stack.release(env)
    stack.prepare(env)
    sink.clear()


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


def _verify(
    run: PipelineRun, probe: PipelineProbe, orders: int, sent: list[LoadResult], label: str
) -> None:
    counts, reads = _settled_counts(orders, probe)
    tally = {
        "orders_total": counts.orders_total,
        "orders_finalizado": counts.orders_finalizado,
        "events_by_state": dict(counts.events_by_state),
        "events_email_sent": counts.events_email_sent,
        "inbox_messages": counts.inbox_messages,
    }
    run.counts["reads"] = run.counts.get("reads", 0) + reads
    for key, value in tally.items():
        if isinstance(value, dict):
            totals = run.counts.setdefault(key, {})
            for state, n in value.items():
                totals[state] = totals.get(state, 0) + n
        elif value is not None:
            run.counts[key] = run.counts.get(key, 0) + value
        else:
            run.counts.setdefault(key, None)
    problems = pipeline_problems(orders, counts)
    order_ids = [order_id for result in sent for order_id in result.order_ids]
    errors = sum(sum(r.errors.values()) for r in sent)
    if errors or len(set(order_ids)) != orders:
        problems.append(
            f"{len(set(order_ids))} distinct orders accepted of {orders}, {errors} calls failed"
        )
    if run.sink.maildir is not None:
        problems += inbox_problems(order_ids, states_by_order(run.sink.maildir, set(order_ids)))
    run.phases.append({"orders": orders, "reads": reads, "problems": len(problems)})
    run.problems += [f"{label}{problem}" for problem in problems]
