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

    @property
    def elapsed_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


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


def run_pipeline(
    stack: BenchStack,
    sink: MailSink,
    orders: int,
    workers: LoadWorkers,
    timeout_s: float,
    report: Report,
) -> PipelineRun:
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
    try:
        producer.wait_healthy(env["GRPC_LISTEN"], 30)
        consumer.wait_log(
            "partitions assigned", 60, processes=int(env.get("CONSUMER_WORKERS", "1"))
        )
        shares = split(SEND_CONCURRENCY, workers.size)
        run.started_at = time.time() + 0.5
        specs = [
            LoadSpec(
                kind="create",
                address=env["GRPC_LISTEN"],
                concurrency=share,
                start_at=run.started_at,
                count=count,
                seed=100 + index,
                key_prefix=f"{stack.run_id}-{scenario}-{index}",
            )
            for index, (share, count) in enumerate(
                zip(shares, split(orders, len(shares)), strict=True)
            )
        ]
        meter = CpuMeter(
            {
                "producer": [producer.pid],
                "consumer": [consumer.pid],
                "client": workers.pids[: len(specs)],
                **{name: [pid] for name, pid in stack.pids().items()},
            }
        )
        with RssSampler({"producer": producer.pid, "consumer": consumer.pid}) as sampler:
            workers.submit(specs)
            time.sleep(max(run.started_at - time.time(), 0))
            meter.start()
            try:
                run.detected_at = _wait_complete(
                    probe, orders, time.monotonic() + timeout_s, [producer, consumer], report
                )
            except ServiceError as exc:
                run.problems.append(str(exc))
            except KeyboardInterrupt:
                # Report what was measured (as FAILED), then let the bench stop.
                run.interrupted = True
                run.problems.append(
                    f"interrupted after {time.time() - run.started_at:.0f}s: "
                    f"{probe.emails():,}/{5 * orders:,} e-mails, "
                    f"{probe.logged()['finalizado']:,}/{orders:,} logged Finalizado"
                )
            run.cpu = meter.stop()
            run.sent = [] if run.interrupted else workers.collect(60)
        end = run.detected_at or time.time()
        for name in ("producer", "consumer"):
            run.rss[name] = rss_profile(sampler.samples, name, run.started_at, end)
        if run.detected_at is not None:
            _verify(run, probe, sink)
    finally:
        probe.close()
        run.es_polls = probe.poll_seconds
        run.exit_codes = {"producer": producer.stop(), "consumer": consumer.stop()}
        stack.release(env)
        run.logs = [scan_log(producer.log_path), scan_log(consumer.log_path)]
        run.pace = consumer_pace(consumer.log_path)
        run.finished_at = _finished_at(run)
    return run


def _finished_at(run: PipelineRun) -> float | None:
    """The last order's Finalizado as the consumer logged it (after its ES write): exact to
    the millisecond, where detection is only as fine as the polling."""
    if run.detected_at is None:
        return None
    last = run.pace.last_finalizado_at if run.pace else None
    if last is None or not run.started_at < last <= run.detected_at:
        return run.detected_at
    return last


def _settled_counts(run: PipelineRun, probe: PipelineProbe) -> PipelineCounts:
    """The final tally; re-read for a while, since noida-db once answered a stale count."""
    time.sleep(SETTLE_S)
    deadline = time.monotonic() + VERIFY_RETRY_S
    reads = 0
    while True:
        counts = probe.counts()
        reads += 1
        if not pipeline_problems(run.orders, counts) or time.monotonic() > deadline:
            run.counts["reads"] = reads
            return counts
        time.sleep(1)


def _verify(run: PipelineRun, probe: PipelineProbe, sink: MailSink) -> None:
    counts = _settled_counts(run, probe)
    run.counts |= {
        "orders_total": counts.orders_total,
        "orders_finalizado": counts.orders_finalizado,
        "events_by_state": dict(counts.events_by_state),
        "events_email_sent": counts.events_email_sent,
        "inbox_messages": counts.inbox_messages,
    }
    run.problems += pipeline_problems(run.orders, counts)
    order_ids = [order_id for result in run.sent for order_id in result.order_ids]
    errors = sum(sum(r.errors.values()) for r in run.sent)
    if errors or len(set(order_ids)) != run.orders:
        run.problems.append(
            f"{len(set(order_ids))} distinct orders accepted of {run.orders}, {errors} calls failed"
        )
    if sink.maildir is not None:
        run.problems += inbox_problems(order_ids, states_by_order(sink.maildir, set(order_ids)))
