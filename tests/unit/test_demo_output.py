"""The demo's closing lines: every command and address stays on one line in a narrow terminal,
so pasting a `curl` command runs it whole (a hard line break would run it cut short)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from devkit import demo
from pedidos.runtime.config import Settings


@pytest.mark.parametrize("inbox", ["http://127.0.0.1:31243", None])
def test_commands_and_addresses_are_not_broken_across_lines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, inbox: str | None
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(demo, "console", Console(file=out, width=50, color_system=None))
    stack = SimpleNamespace(web_inbox_url=inbox, maildir=tmp_path / "a-long-folder" / "mail")
    settings = Settings(elasticsearch_url="http://127.0.0.1:14652")
    logs = tmp_path / ".stack" / "demo" / "logs"

    demo._print_where_to_look(stack, settings, logs)  # type: ignore[arg-type]

    lines = out.getvalue().splitlines()
    curls = [line for line in lines if "curl -s" in line]
    assert len(curls) == 2
    for line in curls:
        assert line.endswith("&pretty'") or line.endswith("?pretty'"), lines
    assert f"Logs: {logs}" in lines
    mail = next(line for line in lines if line.startswith("E-mails"))
    assert (inbox or str(stack.maildir / "new")) in mail
