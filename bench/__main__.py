"""`python -m bench [--quick | --long] [--orders N]`: one run, a table and a JSON file."""

from __future__ import annotations

import signal
import sys
from datetime import UTC, datetime

from rich.console import Console

from bench.figures import Status
from bench.options import parse_options
from bench.report import print_report, write_json
from bench.run import BenchRun
from devkit.stack import StackError


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
    path = write_json(bench.figures, bench.logs, meta, started)
    meta["results_file"] = str(path)
    print_report(console, bench.figures, bench.logs, meta)
    failed = [f.key for f in bench.figures if f.status is Status.FAILED]
    if failed:
        console.print(f"[bold red]FAILED figures (not reported): {', '.join(failed)}[/]")
    if meta["interrupted"]:
        console.print("[bold red]interrupted: the results above are partial[/]")
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
