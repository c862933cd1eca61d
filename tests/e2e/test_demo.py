"""`make demo` runs `python -m admin demo`: it must bring everything up, finish, and clean up."""

import re
import shutil
import subprocess

import pytest

from devkit import maildev
from devkit.processes import run_admin

pytestmark = pytest.mark.e2e


def run_demo(cwd, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_admin(
        "demo",
        "--no-keep-running",
        *args,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "120", **env},
        inherit=False,
        cwd=cwd,
        timeout_s=600,  # the first run on a machine installs MailDev from npm
    )


def assert_stopped_everything(result: subprocess.CompletedProcess[str], tmp_path) -> None:
    assert "stopped producer, consumer and the embedded stack" in result.stdout
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in ps  # no server left running from this demo


@pytest.mark.skipif(
    shutil.which("node") is None or not maildev.available(), reason="MailDev needs Node.js and npm"
)
def test_demo_walks_its_orders_to_finalizado_into_the_web_inbox(tmp_path) -> None:
    result = run_demo(tmp_path, "--orders", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MailDev web inbox" in result.stdout
    assert "3/3 pedidos finalizados" in result.stdout
    assert "E-mails: open http://127.0.0.1:" in result.stdout
    # Counted from MailDev's REST API, as the live table shows them.
    assert "15 e-mails delivered (15 expected)" in result.stdout
    # Read back from the services' /metrics: the same figures.
    assert "Metrics:        http://127.0.0.1:" in result.stdout
    # Lag 0: the demo waits for the consumer to commit the last state records it read.
    assert "accepted 3, e-mails sent 15, lag 0," in result.stdout, result.stdout
    assert re.search(r"lag 0, mean accepted→Finalizado \d+\.\d\d s\n", result.stdout)
    assert len(list((tmp_path / ".stack" / "demo" / "mail").glob("*.eml"))) == 15
    assert_stopped_everything(result, tmp_path)


def test_demo_without_a_web_inbox_keeps_a_maildir(tmp_path) -> None:
    result = run_demo(tmp_path, "--orders", "3", "--inbox", "maildir")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3/3 pedidos finalizados" in result.stdout
    assert "install Node.js and npm for a web inbox" in result.stdout
    assert "15 e-mails delivered (15 expected)" in result.stdout
    # One order's trace, from the spans the services exported: its id and every state's span.
    assert re.search(r"Traza del pedido \S+: [0-9a-f]{32}", result.stdout), result.stdout
    for state in ("Procesando", "Preparación", "Enviado", "Entregado", "Finalizado"):
        assert f"[{state}]" in result.stdout
    assert len(list((tmp_path / ".stack" / "demo" / "mail" / "new").iterdir())) == 15
    assert_stopped_everything(result, tmp_path)
