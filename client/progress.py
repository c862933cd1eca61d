"""Each order's outcome while a batch is sent: a rich bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from client.outcomes import Confirmed, Failed, Outcome, Rejected


def describe(outcome: Outcome) -> str:
    """One line in Spanish, like the original client printed the server's answer."""
    number = outcome.index + 1
    match outcome:
        case Confirmed():
            return f"Pedido {number}: aceptado, id {outcome.order_id}"
        case Rejected():
            return f"Pedido {number}: rechazado ({outcome.code.name}: {outcome.message})"
        case Failed():
            return (
                f"Pedido {number}: falló tras {outcome.attempts} intentos "
                f"({outcome.code.name}: {outcome.message})"
            )


class PlainProgress:
    """One printed line per order, for logs and pipes."""

    def __init__(self, console: Console, total: int) -> None:
        self._console = console
        self._total = total
        self._done = 0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def __call__(self, outcome: Outcome) -> None:
        self._done += 1
        self._console.print(f"[{self._done}/{self._total}] {describe(outcome)}", markup=False)


class BarProgress:
    """A live bar; only problems are printed above it, since thousands of ids would scroll away."""

    def __init__(self, console: Console, total: int) -> None:
        self._progress = Progress(
            TextColumn("Enviando pedidos"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[accepted]} aceptados"),
            TextColumn("[red]{task.fields[problems]} con error"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task: TaskID = self._progress.add_task("envío", total=total, accepted=0, problems=0)
        self._accepted = 0
        self._problems = 0

    def __enter__(self) -> BarProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def __call__(self, outcome: Outcome) -> None:
        if isinstance(outcome, Confirmed):
            self._accepted += 1
        else:
            self._problems += 1
            self._progress.console.print(f"[red]{escape(describe(outcome))}")
        self._progress.update(
            self._task, advance=1, accepted=self._accepted, problems=self._problems
        )


class SilentProgress:
    """For --json: stdout carries only the JSON document."""

    def __enter__(self) -> SilentProgress:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def __call__(self, outcome: Outcome) -> None:
        return None


OutcomeDisplay = PlainProgress | BarProgress | SilentProgress


def progress_for(console: Console, total: int, *, quiet: bool) -> OutcomeDisplay:
    if quiet:
        return SilentProgress()
    if console.is_terminal:
        return BarProgress(console, total)
    return PlainProgress(console, total)
