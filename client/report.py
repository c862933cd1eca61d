"""The end-of-batch summary: a rich table for people, JSON for scripts."""

from __future__ import annotations

import json

from babel.numbers import format_decimal
from rich.console import Console
from rich.table import Table

from client.outcomes import ErrorGroup, SendReport

LOCALE = "es_CL"


def _number(value: float, pattern: str = "#,##0.##") -> str:
    return str(format_decimal(value, format=pattern, locale=LOCALE))


def _error_table(title: str, groups: list[ErrorGroup]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("Código")
    table.add_column("Mensaje", overflow="fold")
    table.add_column("Cantidad", justify="right")
    for group in groups:
        table.add_row(group.code.name, group.message, _number(group.count))
    return table


def render_summary(report: SendReport, console: Console) -> None:
    summary = Table(title="Resumen del envío", title_justify="left", show_header=False)
    summary.add_column("Concepto")
    summary.add_column("Valor", justify="right")
    summary.add_row("Enviados", _number(report.sent))
    summary.add_row("Aceptados", f"[green]{_number(len(report.accepted))}[/green]")
    summary.add_row("Rechazados", f"[red]{_number(len(report.rejected))}[/red]")
    summary.add_row("Fallidos tras reintentos", f"[red]{_number(len(report.failed))}[/red]")
    summary.add_row("Tiempo", f"{_number(report.elapsed_s, '#,##0.00')} s")
    summary.add_row("Ritmo", f"{_number(report.rate_per_s, '#,##0.0')} pedidos/s")
    console.print(summary)
    if report.rejected:
        console.print(_error_table("Rechazos", report.rejection_groups()))
    if report.failed:
        console.print(_error_table("Fallos tras reintentos", report.failure_groups()))


def _groups_as_dicts(groups: list[ErrorGroup]) -> list[dict[str, object]]:
    return [{"code": g.code.name, "message": g.message, "count": g.count} for g in groups]


def summary_as_json(report: SendReport) -> str:
    """The summary and accepted order ids, as one JSON document (keys are for programs)."""
    return json.dumps(
        {
            "sent": report.sent,
            "accepted": len(report.accepted),
            "rejected": len(report.rejected),
            "failed": len(report.failed),
            "elapsed_s": round(report.elapsed_s, 3),
            "rate_per_s": round(report.rate_per_s, 1),
            "order_ids": report.order_ids,
            "rejections": _groups_as_dicts(report.rejection_groups()),
            "failures": _groups_as_dicts(report.failure_groups()),
        },
        ensure_ascii=False,
    )
