"""`make demo` runs `python -m admin demo`: it must bring everything up, finish, and clean up."""

import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.e2e


def test_demo_walks_its_orders_to_finalizado_and_stops_everything(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "admin", "demo", "--orders", "3", "--no-keep-running"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3/3 pedidos finalizados" in result.stdout
    assert "stopped producer, consumer and the embedded stack" in result.stdout
    mails = list((tmp_path / ".stack" / "demo" / "mail" / "new").iterdir())
    assert len(mails) == 15
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in ps  # no server left running from this demo
