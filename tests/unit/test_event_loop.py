"""The services run on uvloop where it is installed, on asyncio's own loop where it is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pedidos.runtime.event_loop import event_loop_factory

REPO = Path(__file__).resolve().parents[2]
# A service whose work is to print the class of the loop it runs on.
PROBE = """
import asyncio, sys
{block}
from pedidos.runtime.service_main import run_service

async def serve(settings):
    print(type(asyncio.get_running_loop()).__module__)

run_service("consumer", lambda settings: 1, serve)
"""


def loop_module(block: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(block=block)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_service_runs_on_uvloop() -> None:
    assert loop_module() == "uvloop"


def test_without_uvloop_a_service_runs_on_asyncio() -> None:
    # None in sys.modules makes `import uvloop` raise ImportError, as if it were not installed.
    assert loop_module("sys.modules['uvloop'] = None").startswith("asyncio")


def test_the_factory_is_uvloops_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvloop

    assert event_loop_factory() is uvloop.new_event_loop
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert event_loop_factory() is None
