"""`python -m bench [--quick | --long] [--orders N]`: one run, its results as a rich table on
the terminal and a JSON file in bench/results/."""

from __future__ import annotations

import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.figures import Figure, Status, short
from bench.options import parse_options
from bench.resources import FOREIGN_LOAD_CORES
from bench.run import BenchRun
from devkit.stack import StackError

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _shared(figure: Figure) -> bool:
    return (figure.foreign_cores or 0.0) >= FOREIGN_LOAD_CORES


def _measured(figure: Figure) -> Text:
    if figure.status is Status.FAILED:
        return Text("FAILED", style="bold red")
    text = Text(f"{short(figure.value) if figure.value is not None else ''} {figure.unit}")
    spread = figure.details.get("value_range")
    if spread:  # the median of several runs: their range
        text.append(
            f"\n({short(spread[0])}–{short(spread[1])}, {figure.details['median_of']} runs)"
        )
    if _shared(figure):
        text.append(" *", style="bold yellow")
    return text


def _met(figure: Figure) -> Text:
    if figure.met is None:
        return Text("—" if not figure.requirements else "n/a", style="dim")
    return Text("MET", style="green") if figure.met else Text("NOT MET", style="bold red")


def results_table(figures: list[Figure]) -> Table:
    table = Table(title="pedidos benchmark", show_lines=True, expand=False)
    numbers = ("measured", "p50 ms", "p99 ms", "limit (same run)", "ratio")
    for name in ("scenario", "figure", *numbers, "target", "met?"):
        justify = "right" if name in numbers else "center" if name == "met?" else "left"
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for figure in figures:
        # "?": the limit was not measured
        shown = "?" if figure.limit is None else short(figure.limit)
        limit = f"{shown} ({figure.limit_label})" if figure.limit_label else ""
        table.add_row(
            figure.scenario,
            figure.label,
            _measured(figure),
            f"{figure.latency.p50_ms:,.2f}" if figure.latency else "",
            f"{figure.latency.p99_ms:,.2f}" if figure.latency else "",
            limit,
            "" if figure.ratio is None else f"{figure.ratio:.2f}×",
            "\n".join(r.describe() for r in figure.requirements),
            _met(figure),
        )
    return table


def print_report(console: Console, bench: BenchRun, meta: dict[str, Any]) -> None:
    figures, logs = bench.figures, bench.logs
    console.print(results_table(figures))
    if any(_shared(f) for f in figures):
        console.print(
            f"[bold yellow]*[/] other processes used ≥ {FOREIGN_LOAD_CORES} cores of this "
            "machine while it was measured: the figure is lower than the code can do"
        )
    console.print("[bold]notes[/]")
    for figure in figures:
        for note in figure.notes:
            style = "red" if figure.status is Status.FAILED or "SHARED" in note else ""
            console.print(f"  {figure.key}: {note}", style=style, highlight=False)
    noisy = [f for f in logs if f.suspicious]
    if not noisy:
        console.print(f"service and stack logs ({len(logs)}): no warnings, errors or tracebacks")
    for findings in noisy:
        console.print(f"[yellow]{findings.path}[/]: {dict(findings.by_level)}")
        for message, count in findings.messages.most_common(5):
            console.print(f"    {count:>6} × {message}")
    console.print(
        f"broker {meta.get('broker', '?')} · runtime {meta['runtime_s']:.0f}s · "
        f"service logs in {meta['logs']} · results {meta.get('results_file', '?')}"
    )
    if bench.speed is not None:
        console.print(f"this machine, idle: {bench.speed.describe()}", highlight=False)


def write_json(bench: BenchRun, meta: dict[str, Any], started: datetime) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{started:%Y%m%dT%H%M%SZ}.json"
    figures = [f.to_json() for f in bench.figures]
    document = {"meta": meta, "figures": figures, "logs": [f.to_json() for f in bench.logs]}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    console = Console()
    if not console.is_terminal:  # piped or in CI: keep the table's columns readable
        console = Console(width=180)
    started = datetime.now(UTC)
    try:
        bench = BenchRun(options, console)
        meta = bench.run()
    except StackError as exc:
        console.print(f"[red]bench: the embedded stack did not start: {exc}[/]")
        return 2
    meta["started_at"] = started.isoformat(timespec="seconds")
    path = write_json(bench, meta, started)
    meta["results_file"] = str(path)
    print_report(console, bench, meta)
    failed = [f.key for f in bench.figures if f.status is Status.FAILED]
    if failed:
        console.print(f"[bold red]FAILED figures (not reported): {', '.join(failed)}[/]")
    if meta["interrupted"]:
        console.print("[bold red]interrupted: the results above are partial[/]")
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
