"""`python -m client status|watch|--follow` against real producer and consumer processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import grpc
import pytest

from client.__main__ import main
from pedidos.v1 import orders_pb2_grpc
from tests.conftest import Services
from tests.integration.test_tracking import start_pipeline
from tests.requests import order_request
from tests.support import REPO

pytestmark = pytest.mark.integration

STATES = ["Procesando", "Preparación", "Enviado", "Entregado", "Finalizado"]


def test_watch_then_status_of_an_order(
    services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = start_pipeline(services)
    stub = orders_pb2_grpc.OrderServiceStub(grpc.insecure_channel(address))
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
