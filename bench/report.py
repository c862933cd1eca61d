"""The results: a rich table on the terminal and a JSON file in bench/results/."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.figures import Figure, Status
from bench.logscan import LogFindings
from bench.resources import FOREIGN_LOAD_CORES

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _number(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _shared(figure: Figure) -> bool:
    return (figure.foreign_cores or 0.0) >= FOREIGN_LOAD_CORES


def _measured(figure: Figure) -> Text:
    if figure.status is Status.FAILED:
        return Text("FAILED", style="bold red")
    if figure.status is not Status.OK:
        return Text(figure.status.value, style="yellow")
    text = Text(f"{_number(figure.value, 1)} {figure.unit}")
    if _shared(figure):
        text.append(" *", style="bold yellow")
    return text


def _met(figure: Figure) -> Text:
    if figure.met is None:
        return Text("—" if not figure.requirements else "n/a", style="dim")
    return Text("yes", style="green") if figure.met else Text("NO", style="bold red")


def results_table(figures: list[Figure]) -> Table:
    table = Table(title="pedidos benchmark", show_lines=True, expand=False)
    for name, justify in (
        ("scenario", "left"),
        ("figure", "left"),
        ("measured", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("limit (same run)", "right"),
        ("ratio", "right"),
        ("target", "left"),
        ("met?", "center"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for figure in figures:
        limit = ""
        if figure.limit is not None:
            limit = f"{_number(figure.limit, 1)} ({figure.limit_label})"
        elif figure.limit_label:
            limit = f"? ({figure.limit_label})"
        table.add_row(
            figure.scenario,
            figure.label,
            _measured(figure),
            _number(figure.latency.p50_ms, 2) if figure.latency else "",
            _number(figure.latency.p99_ms, 2) if figure.latency else "",
            limit,
            "" if figure.ratio is None else f"{figure.ratio:.2f}×",
            "\n".join(r.describe() for r in figure.requirements),
            _met(figure),
        )
    return table


def print_report(
    console: Console, figures: list[Figure], logs: list[LogFindings], meta: dict[str, Any]
) -> None:
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
        f"service logs in {meta['logs']} · "
        f"results {meta.get('results_file', '?')}"
    )


def write_json(
    figures: list[Figure],
    logs: list[LogFindings],
    meta: dict[str, Any],
    started: datetime,
    results_dir: Path = RESULTS_DIR,
) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    document = {
        "meta": meta,
        "figures": [f.to_json() for f in figures],
        "logs": [f.to_json() for f in logs],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    return path
