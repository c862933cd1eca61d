"""Optional TLS between client and producer, with a certificate from a test CA (trustme)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.__main__ import main as client_main
from devkit.orders import order_request
from devkit.processes import ServiceProcess, Services
from devkit.waiting import wait_for
from pedidos.v1 import orders_pb2_grpc

pytestmark = pytest.mark.integration


def tls_healthy(address: str, ca: bytes) -> bool:
    with grpc.secure_channel(address, grpc.ssl_channel_credentials(ca)) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def test_producer_serves_tls_and_the_client_verifies_it(
    services: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    env = {
        **services.env,
        "GRPC_TLS_CERT": str(tmp_path / "server.pem"),
        "GRPC_TLS_KEY": str(tmp_path / "server.pem"),
    }
    producer = ServiceProcess("producer", env, tmp_path).start()
    services.started.append(producer)
    address = env["PRODUCER_ADDRESS"]
    ca_pem = (tmp_path / "ca.pem").read_bytes()
    wait_for(lambda: tls_healthy(address, ca_pem), 30, "producer health over TLS")

    # The scripted client, configured only through the environment, sends over TLS.
    monkeypatch.setenv("GRPC_TLS_CA", str(tmp_path / "ca.pem"))
    code = client_main(
        ["--count", "3", "--email", "tls@example.cl", "--yes", "--json", "--address", address]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert len(summary["order_ids"]) == 3

    # A plaintext client cannot talk to it, and a client trusting another CA refuses it.
    plain = orders_pb2_grpc.OrderServiceStub(grpc.insecure_channel(address))
    with pytest.raises(grpc.RpcError) as caught:
        plain.CreateOrder(order_request(), timeout=3)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not tls_healthy(address, trustme.CA().cert_pem.bytes())
