"""The figures of an end-to-end run: orders/s beside the mail limit, and memory."""

from __future__ import annotations

from dataclasses import asdict

from bench.figures import Figure, Requirement, at_least_times
from bench.pipeline import SEND_CONCURRENCY, PipelineRun
from bench.resources import MB, cpu_ms_per_item, growth

ORIGINAL = 77.0  # orders/s of the original system (69-77), the 10x goal's base
RSS_LIMIT_MB = 200.0
FLAT_GROWTH = 0.10  # at most 10 % growth between the middle and the end of the run


def _send_rate(run: PipelineRun) -> float | None:
    ends = [r.last_done_at for r in run.sent if r.last_done_at is not None]
    if not ends or max(ends) <= run.started_at:
        return None
    return sum(r.completed for r in run.sent) / (max(ends) - run.started_at)


def e2e_figure(run: PipelineRun, mail_limit: Figure | None, index_limit: Figure | None) -> Figure:
    limit = mail_limit.value / 5 if mail_limit and mail_limit.value is not None else None
    elapsed = run.elapsed_s
    value = run.orders / elapsed if elapsed else None
    figure = Figure(
        key=f"e2e.{run.sink.name}",
        scenario="6 End to end",
        label=f"{run.orders:,} orders → {run.sink.name} sink",
        unit="orders/s",
        value=value,
        limit=limit,
        limit_label=f"mail limit ({run.sink.name}) ÷ 5",
        requirements=[at_least_times("orders/s", value, limit, 0.8)],
    )
    if run.sink.maildir is None:
        figure.requirements.append(Requirement("orders/s (10× original)", value, 10 * ORIGINAL))
    send_rate = _send_rate(run)
    if send_rate is not None:
        figure.notes.append(f"sent at c={SEND_CONCURRENCY}: {send_rate:,.0f} orders/s")
    if run.cpu is not None:
        figure.notes.append(run.cpu.describe())
        figure.foreign_cores = run.cpu.other
        per_order = cpu_ms_per_item(run.cpu, "consumer", value)
        if per_order is not None:
            figure.notes.append(f"consumer CPU {per_order:.2f} ms per order (5 states)")
    if index_limit is not None and index_limit.value is not None:
        figure.notes.append(f"index limit (same run): {index_limit.value:,.0f} orders/s")
    if run.pace is not None:
        figure.notes.append(run.pace.describe())
    if len(run.phases) > 1:
        figure.notes.append(
            f"{len(run.phases)} phases of ≤ {max(p['orders'] for p in run.phases):,} orders, "
            f"data dropped in between; {run.paused_s:.0f}s of pauses not counted"
        )
    if run.es_polls:
        figure.notes.append(
            f"bench's ES polls (refresh + count): {len(run.es_polls)}, "
            f"mean {sum(run.es_polls) / len(run.es_polls):.2f}s, max {max(run.es_polls):.2f}s"
        )
    unclean = {name: code for name, code in run.exit_codes.items() if code != 0}
    if unclean:
        figure.notes.append(f"unclean exit (None = killed): {unclean}")
    figure.details = {
        "orders": run.orders,
        "elapsed_s": None if elapsed is None else round(elapsed, 3),
        "detected_after_s": None
        if run.detected_at is None
        else round(run.detected_at - run.started_at, 3),
        "send_rate": None if send_rate is None else round(send_rate, 1),
        "counts": run.counts,
        "cpu": run.cpu.to_json() if run.cpu else None,
        "exit_codes": run.exit_codes,
        "pace": None if run.pace is None else asdict(run.pace),
        "es_poll_max_s": round(max(run.es_polls), 3) if run.es_polls else None,
        "phases": run.phases,
        "paused_s": round(run.paused_s, 3),
    }
    figure.refuse(run.problems)
    return figure


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
            details={k: v for k, v in profile.items()},
            foreign_cores=run.cpu.other if run.cpu else None,
        )
        if run.finished_at is None or run.problems:
            # The profile stays in details: a run cut short still shows how memory grew.
            figure.refuse(["end-to-end run incomplete or incorrect; memory not reported"])
        figures.append(figure)
    return figures
