"""`python -m client status|watch|--follow` against real producer and consumer processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from client.cli import main
from devkit.credentials import producer_channel
from devkit.orders import order_request
from devkit.processes import REPO, Services
from devkit.waiting import wait_for
from pedidos.v1 import orders_pb2_grpc
from tests.integration.test_tracking import start_pipeline

pytestmark = pytest.mark.integration

STATES = ["Procesando", "Preparación", "Enviado", "Entregado", "Finalizado"]


def test_watch_then_status_of_an_order(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = start_pipeline(services)
    stub = orders_pb2_grpc.OrderServiceStub(producer_channel(address))
    order_id = stub.CreateOrder(order_request(), timeout=10).order_id

    assert main(["watch", order_id, "--address", address]) == 0
    out = capsys.readouterr().out
    shown = re.findall(r"^\d\d-\d\d-\d{4} [\d:.]+  (\S+)$", out, flags=re.MULTILINE)
    assert shown == STATES[STATES.index(shown[0]) :]
    assert f"Siguiendo el pedido {order_id}" in out
    assert "El pedido llegó a «Finalizado»." in out

    assert main(["status", order_id, "--address", address]) == 0
    out = capsys.readouterr().out
    assert f"Pedido {order_id}" in out
    assert "Estado actual: Finalizado" in out
    for text in [
        "Aceptado",
        *STATES,
        "Laptop HP",
        "$649.990",
        "Mercado Pago (Mastercard)",
        "Banco Estado",
        "Región del Biobío",
        "comprador@example.cl",
    ]:
        assert text in out
    assert "pendiente" not in out


def test_unknown_and_malformed_ids(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    address, _ = start_pipeline(services)
    unknown = str(uuid.uuid4())
    assert main(["status", unknown, "--address", address]) == 1
    assert f"No existe el pedido {unknown}." in capsys.readouterr().err
    assert main(["watch", unknown, "--address", address]) == 1
    assert f"No existe el pedido {unknown}." in capsys.readouterr().err
    assert main(["status", "pedido-7", "--address", address]) == 2
    assert "no es un id de pedido válido" in capsys.readouterr().err


def test_send_and_follow_until_every_order_is_finished(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = start_pipeline(services)
    argv = ["--count", "6", "--email", "ana@example.cl", "--yes", "--seed", "3"]
    assert main([*argv, "--follow", "--follow-concurrency", "2", "--address", address]) == 0
    out = capsys.readouterr().out
    assert "Los 6 pedidos llegaron a «Finalizado»." in out
    finished = re.findall(r"^Pedido (\d) \((\S+)\): Finalizado", out, flags=re.MULTILINE)
    assert sorted(number for number, _ in finished) == ["1", "2", "3", "4", "5", "6"]
    for _, order_id in finished:
        reached = re.findall(rf"^Pedido \d \({order_id}\): (\S+)", out, flags=re.MULTILINE)
        assert reached == STATES[STATES.index(reached[0]) :]


def test_the_console_script_follows_with_json_on_stdout(services: Services) -> None:
    address, _ = start_pipeline(services)
    result = subprocess.run(
        [sys.executable, "-m", "client", "--count", "2", "--yes", "--json", "--follow"],
        env={**os.environ, "PRODUCER_ADDRESS": address},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # stdout stays one JSON document; the follow view goes to stderr.
    summary = json.loads(result.stdout)
    assert summary["accepted"] == 2
    for order_id in summary["order_ids"]:
        assert f"({order_id}): Finalizado" in result.stderr
    status = subprocess.run(
        [sys.executable, "-m", "client", "status", summary["order_ids"][0]],
        env={**os.environ, "PRODUCER_ADDRESS": address},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert "Estado actual: Finalizado" in status.stdout


# Slow enough that a walk outlasts a producer restart or a Ctrl-C, even on a busy machine.
SLOW_STAGES = {"STAGE_DELAY_MIN_S": 3, "STAGE_DELAY_MAX_S": 4}


# A run started in the background (`make test &`) ignores SIGINT, and children inherit that: the
# Ctrl-C test needs the handler a terminal gives. Set in the child itself, not in a `preexec_fn`:
# forking this process while gRPC threads run crashed the child before its exec (CI, stop 25).
_CLIENT_WITH_SIGINT = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('client', run_name='__main__', alter_sys=True)"
)


class ClientProcess:
    """`python -m client ...` with its output in files, read while it runs."""

    def __init__(self, tmp_path: Path, address: str, *argv: str, stdin: str = "") -> None:
        self.out, self.err = tmp_path / "client.out", tmp_path / "client.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _CLIENT_WITH_SIGINT, *argv],
                env={**os.environ, "PRODUCER_ADDRESS": address, "PYTHONUNBUFFERED": "1"},
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
            )
        assert self.process.stdin is not None
        self.process.stdin.write(stdin.encode())
        self.process.stdin.close()

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(
                f"client still running:\n{self.stdout()}\n{self.stderr()}"
            ) from None


def test_interactive_send_lists_the_ids_and_follows_them_when_asked(
    services: Services, tmp_path: Path
) -> None:
    address, _ = start_pipeline(services)
    # How many, e-mail (default), confirm, then yes to following them.
    client = ClientProcess(tmp_path, address, stdin="2\n\ns\ns\n")
    assert client.wait(180) == 0, client.stderr()
    out = client.stdout()
    ids = re.findall(r"^ +(\d)\. ([0-9a-f-]{36})$", out, flags=re.MULTILINE)
    assert [number for number, _ in ids] == ["1", "2"]
    assert "¿Quieres seguir los 2 pedidos en vivo hasta «Finalizado»? (s/n)" in out
    assert "Los 2 pedidos llegaron a «Finalizado»." in out
    for _, order_id in ids:
        reached = re.findall(rf"Pedido \d \({order_id}\): (\S+)", out)
        assert reached == STATES[STATES.index(reached[0]) :]
        assert reached[-1] == "Finalizado"


def test_interactive_send_without_following_ends_after_the_ids(
    services: Services, tmp_path: Path
) -> None:
    address, _ = start_pipeline(services)
    client = ClientProcess(tmp_path, address, stdin="1\n\ns\nn\n")
    assert client.wait(120) == 0, client.stderr()
    out = client.stdout()
    assert re.search(r"^Pedido aceptado:\n +1\. [0-9a-f-]{36}$", out, flags=re.MULTILINE), out
    assert "¿Quieres seguir el pedido en vivo hasta «Finalizado»? (s/n)" in out
    assert "Pedido 1 (" not in out


def test_ctrl_c_while_following_leaves_cleanly(services: Services, tmp_path: Path) -> None:
    address, _ = start_pipeline(services, **SLOW_STAGES)
    client = ClientProcess(tmp_path, address, stdin="1\n\ns\ns\n")
    first = wait_for(
        # Not at a line start: the prompt before it has no newline when stdin is not a terminal.
        lambda: re.search(r"Pedido 1 \((\S+)\): Procesando", client.stdout()),
        90,
        "the client to show the order following",
    )
    client.process.send_signal(signal.SIGINT)
    assert client.wait(30) == 130
    out, err = client.stdout(), client.stderr()
    assert "Traceback" not in err + out
    assert first is not None
    assert (
        "Dejaste de seguir los pedidos; siguen avanzando. "
        f"Para retomarlo: python -m client watch {first.group(1)}"
    ) in out
    assert "): Finalizado" not in out, "interrupted before the walk ended"
    assert "llegó a «Finalizado»" not in out


def test_watch_reconnects_when_the_producer_restarts(services: Services, tmp_path: Path) -> None:
    address, producer = start_pipeline(services, **SLOW_STAGES)
    stub = orders_pb2_grpc.OrderServiceStub(producer_channel(address))
    order_id = stub.CreateOrder(order_request(), timeout=10).order_id
    client = ClientProcess(tmp_path, address, "watch", order_id)
    wait_for(lambda: "  Procesando" in client.stdout(), 90, "the watch to show Procesando")

    producer.stop()  # SIGTERM: the producer ends every watch with UNAVAILABLE
    wait_for(lambda: "Se perdió el seguimiento" in client.stderr(), 30, "the client to notice")
    assert client.process.poll() is None, client.stderr()
    restarted = services.producer()
    restarted.wait_log("state feed assigned", timeout=60)

    assert client.wait(180) == 0, client.stderr()
    shown = re.findall(r"^\d\d-\d\d-\d{4} [\d:.]+  (\S+)$", client.stdout(), re.MULTILINE)
    assert shown == STATES, "each state once, in order, across the restart"
    assert "El pedido llegó a «Finalizado»." in client.stdout()
    assert "Conexión recuperada." in client.stderr()
