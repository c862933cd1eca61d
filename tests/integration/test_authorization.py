"""Who may call what (issue #16): every OrderService RPC × no credential / a wrong key / a key
without the permission / the right key, over plaintext and TLS; and over mutual TLS with a good
client certificate, one without the permission, one from another CA and an expired one.

Refusals must not say whether an order exists: each refused read is made for an order that
exists and for one that does not, and both answers must be the same. The matrix's counts are
written to `<tmp>/authorization-matrix.json` and printed (`-s`) for the README.
"""

from __future__ import annotations

import json
import random
import string
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.cli import main as client_main
from devkit.orders import order_request
from devkit.processes import ServiceProcess, Services
from devkit.topics import topic_size
from devkit.waiting import wait_for
from pedidos.domain.order import new_order_id
from pedidos.runtime.api_keys import create_key
from pedidos.v1 import orders_pb2, orders_pb2_grpc

pytestmark = pytest.mark.integration

OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
CREATE_RPCS = ("CreateOrder", "CreateOrders", "CreateOrderBatch")
READ_RPCS = ("GetOrder", "WatchOrder")
Metadata = tuple[tuple[str, str], ...]


def bearer(key: str) -> Metadata:
    return (("authorization", f"Bearer {key}"),)


def call(
    stub: orders_pb2_grpc.OrderServiceStub, rpc: str, metadata: Metadata, order_id: str
) -> tuple[grpc.StatusCode, str]:
    """One call of `rpc`; its status code and details (OK and "" when it succeeded)."""
    try:
        if rpc == "CreateOrder":
            stub.CreateOrder(order_request(), metadata=metadata, timeout=10)
        elif rpc == "CreateOrders":
            results = list(
                stub.CreateOrders(iter([order_request()]), metadata=metadata, timeout=10)
            )
            assert results
            assert results[0].HasField("accepted")
        elif rpc == "CreateOrderBatch":
            batch = orders_pb2.CreateOrderBatchRequest(orders=[order_request()])
            answer = stub.CreateOrderBatch(batch, metadata=metadata, timeout=10)
            assert answer.results[0].HasField("accepted")
        elif rpc == "GetOrder":
            stub.GetOrder(
                orders_pb2.GetOrderRequest(order_id=order_id), metadata=metadata, timeout=5
            )
        else:
            changes = stub.WatchOrder(
                orders_pb2.WatchOrderRequest(order_id=order_id), metadata=metadata, timeout=5
            )
            next(iter(changes))  # the current state comes at once
            changes.cancel()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return OK, ""


class Matrix:
    """The cells checked, by transport and outcome, for the report."""

    def __init__(self) -> None:
        self.cells: list[dict[str, str]] = []

    def check(
        self,
        transport: str,
        credential: str,
        stub: orders_pb2_grpc.OrderServiceStub,
        metadata: Metadata,
        expect: Callable[[str], grpc.StatusCode],
        existing: str,
    ) -> None:
        for rpc in (*CREATE_RPCS, *READ_RPCS):
            code, details = call(stub, rpc, metadata, existing)
            wanted = expect(rpc)
            assert code == wanted, f"{transport}/{credential}/{rpc}: {code} {details}"
            if rpc in READ_RPCS and code in (UNAUTHENTICATED, DENIED):
                # The same answer for an order that does not exist: nothing is revealed.
                assert call(stub, rpc, metadata, str(uuid.uuid4())) == (code, details)
            self.cells.append(
                {"transport": transport, "credential": credential, "rpc": rpc, "code": code.name}
            )

    def summary(self) -> dict[str, int]:
        return dict(Counter(f"{c['transport']}: {c['code']}" for c in self.cells))


def healthy(channel_factory: Callable[[], grpc.Channel]) -> bool:
    with channel_factory() as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
def keys() -> dict[str, tuple[str, str]]:
    return {
        "full": create_key("tienda", ["orders:create", "orders:read"]),
        "creator": create_key("caja", ["orders:create"]),
        "reader": create_key("soporte", ["orders:read"]),
    }


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca, other_ca = trustme.CA(), trustme.CA()
    files: dict[str, str] = {}

    def write(name: str, blob: trustme.Blob) -> None:
        files[name] = str(tmp_path / f"{name}.pem")
        blob.write_to_path(files[name])

    server = ca.issue_cert("127.0.0.1", "localhost")
    write("server", server.private_key_and_cert_chain_pem)
    write("ca", ca.cert_pem)
    write("client_ca", ca.cert_pem)
    for name, issuer, common_name, not_after in (
        ("good", ca, "tienda-web", None),
        ("reader", ca, "soporte", None),
        ("other_ca", other_ca, "tienda-web", None),
        ("expired", ca, "tienda-web", datetime.now(UTC) - timedelta(days=1)),
    ):
        cert = issuer.issue_cert(
            f"{common_name}.clientes.test",
            common_name=common_name,
            not_before=datetime.now(UTC) - timedelta(days=2) if not_after else None,
            not_after=not_after,
        )
        write(f"{name}_key", cert.private_key_pem)
        write(f"{name}_cert", cert.cert_chain_pems[0])
    return files


def _creds(pki: dict[str, str], client: str | None) -> grpc.ChannelCredentials:
    ca = Path(pki["ca"]).read_bytes()
    if client is None:
        return grpc.ssl_channel_credentials(ca)
    return grpc.ssl_channel_credentials(
        ca,
        private_key=Path(pki[f"{client}_key"]).read_bytes(),
        certificate_chain=Path(pki[f"{client}_cert"]).read_bytes(),
    )


def test_every_rpc_answers_each_credential_as_the_matrix_says(
    services: Services,
    keys: dict[str, tuple[str, str]],
    pki: dict[str, str],
    tmp_path: Path,
) -> None:
    configured = ";".join(line for _, line in keys.values())
    base = {**services.env, "GRPC_API_KEYS": configured}
    services.consumer()
    plain = services.producer(log_name="plain", GRPC_API_KEYS=configured)
    plain_address = plain.env["GRPC_LISTEN"]
    tls_env = {
        **base,
        "GRPC_LISTEN": f"127.0.0.1:{_port()}",
        "GRPC_TLS_CERT": pki["server"],
        "GRPC_TLS_KEY": pki["server"],
    }
    mtls_env = {
        **tls_env,
        "GRPC_LISTEN": f"127.0.0.1:{_port()}",
        "GRPC_TLS_CLIENT_CA": pki["client_ca"],
        "GRPC_TLS_CLIENT_PERMISSIONS": json.dumps(
            {"tienda-web": ["orders:create", "orders:read"], "soporte": ["orders:read"]}
        ),
    }
    for name, env, client in (("tls", tls_env, None), ("mtls", mtls_env, "good")):
        process = ServiceProcess("producer", env, tmp_path, name).start()
        services.started.append(process)
        credentials = _creds(pki, client)

        def open_tls(
            address: str = env["GRPC_LISTEN"], creds: grpc.ChannelCredentials = credentials
        ) -> grpc.Channel:
            return grpc.secure_channel(address, creds)

        wait_for(partial(healthy, open_tls), 30, f"{name} producer health")

    # An order that exists (walked by the consumer) for the read RPCs.
    full_key = keys["full"][0]
    plain_stub = orders_pb2_grpc.OrderServiceStub(grpc.insecure_channel(plain_address))
    existing = plain_stub.CreateOrder(
        order_request(key="existe"), metadata=bearer(full_key), timeout=10
    ).order_id
    wait_for(
        lambda: call(plain_stub, "GetOrder", bearer(full_key), existing)[0] == OK,
        30,
        "the order to be indexed",
    )

    def by_permission(allowed: tuple[str, ...]) -> Callable[[str], grpc.StatusCode]:
        return lambda rpc: OK if rpc in allowed else DENIED

    matrix = Matrix()
    tls_stub = orders_pb2_grpc.OrderServiceStub(
        grpc.secure_channel(tls_env["GRPC_LISTEN"], _creds(pki, None))
    )
    bad_key = create_key("nadie", ["orders:create", "orders:read"])[0]
    for transport, stub in (("plaintext", plain_stub), ("tls", tls_stub)):
        matrix.check(transport, "none", stub, (), lambda _: UNAUTHENTICATED, existing)
        matrix.check(
            transport, "bad key", stub, bearer(bad_key), lambda _: UNAUTHENTICATED, existing
        )
        matrix.check(
            transport,
            "create-only key",
            stub,
            bearer(keys["creator"][0]),
            by_permission(CREATE_RPCS),
            existing,
        )
        matrix.check(
            transport,
            "read-only key",
            stub,
            bearer(keys["reader"][0]),
            by_permission(READ_RPCS),
            existing,
        )
        matrix.check(transport, "right key", stub, bearer(full_key), lambda _: OK, existing)

    mtls = mtls_env["GRPC_LISTEN"]
    for credential, client, expect in (
        ("good certificate", "good", lambda _: OK),
        ("certificate without create", "reader", by_permission(READ_RPCS)),
        ("certificate from another CA", "other_ca", lambda _: grpc.StatusCode.UNAVAILABLE),
        ("expired certificate", "expired", lambda _: grpc.StatusCode.UNAVAILABLE),
        ("no certificate", None, lambda _: grpc.StatusCode.UNAVAILABLE),
    ):
        with grpc.secure_channel(mtls, _creds(pki, client)) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            matrix.check("mtls", credential, stub, (), expect, existing)
    # On mutual TLS a key still counts, and decides when both are presented.
    with grpc.secure_channel(mtls, _creds(pki, "reader")) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        matrix.check(
            "mtls", "reader certificate + right key", stub, bearer(full_key), lambda _: OK, existing
        )

    report = {"cells": len(matrix.cells), "by_transport_and_code": matrix.summary()}
    (tmp_path / "authorization-matrix.json").write_text(json.dumps(matrix.cells, indent=1))
    print("authorization matrix:", json.dumps(report, indent=1))
    assert len(matrix.cells) == 5 * (2 * 5 + 6)


def _port() -> int:
    from devkit.net import free_port

    return free_port()


def test_fuzzed_authorization_metadata_never_crashes_the_producer(services: Services) -> None:
    producer = services.producer()
    address = producer.env["GRPC_LISTEN"]
    stub = orders_pb2_grpc.OrderServiceStub(grpc.insecure_channel(address))
    rng = random.Random(16)
    # What gRPC lets a client put in a text header: printable ASCII and the space.
    alphabet = string.ascii_letters + string.digits + string.punctuation + " "
    codes: Counter[str] = Counter()
    refusals: list[tuple[str, grpc.StatusCode, str | None]] = []
    for attempt in range(400):
        shape = attempt % 5
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        value = {
            0: text,
            1: f"Bearer {text}",
            2: f"bearer pdk_{text}",
            3: "Bearer pdk_" + "".join(rng.choice(string.ascii_letters) for _ in range(43)),
            4: f"Basic {text}",
        }[shape]
        metadata: Metadata = (("authorization", value.strip()),)
        if attempt % 7 == 0:
            metadata += (("authorization", "Bearer " + text.strip()),)
        try:
            stub.CreateOrder(order_request(), metadata=metadata, timeout=5)
        except grpc.RpcError as exc:
            codes[exc.code().name] += 1
            refusals.append((value, exc.code(), exc.details()))
        else:
            pytest.fail(f"accepted with authorization {value!r}")
    # Oversized metadata is refused by the transport, not by a crash.
    with pytest.raises(grpc.RpcError):
        stub.CreateOrder(order_request(), metadata=bearer("x" * 20_000), timeout=5)
    assert codes == {"UNAUTHENTICATED": 400}, [r for r in refusals if r[1] != UNAUTHENTICATED]
    assert producer.running
    answer = stub.CreateOrder(
        order_request(), metadata=bearer(services.env["PRODUCER_API_KEY"]), timeout=10
    )
    assert answer.order_id


def test_keyed_ids_are_stable_across_producers_with_the_secret_and_differ_without_it(
    services: Services,
) -> None:
    first = services.producer(log_name="first")
    second = services.producer(log_name="second", GRPC_LISTEN=f"127.0.0.1:{_port()}")
    other_secret = services.producer(
        log_name="other", GRPC_LISTEN=f"127.0.0.1:{_port()}", ORDER_ID_SECRET="z" * 64
    )
    request = order_request(key="carrito-1001", customer_email="victima@example.cl")
    metadata = bearer(services.env["PRODUCER_API_KEY"])

    def order_id(process: ServiceProcess) -> str:
        stub = orders_pb2_grpc.OrderServiceStub(grpc.insecure_channel(process.env["GRPC_LISTEN"]))
        return str(stub.CreateOrder(request, metadata=metadata, timeout=10).order_id)

    ids = [order_id(first), order_id(second), order_id(other_secret)]
    secret = services.env["ORDER_ID_SECRET"].encode()
    expected = new_order_id("victima@example.cl", "carrito-1001", secret)
    assert ids[0] == ids[1] == expected
    assert ids[2] != expected
    # Without the secret, what an attacker can compute from the e-mail and the key is wrong.
    guessed = uuid.uuid5(
        uuid.UUID("6f1c7b1e-3c1a-4f7e-9a55-0d6a3c2b9e41"), "victima@example.cl\x00carrito-1001"
    )
    assert str(guessed) != expected


def test_the_producer_refuses_to_listen_beyond_loopback_without_a_credential(
    services: Services,
) -> None:
    env = {
        **services.env,
        "GRPC_LISTEN": f"0.0.0.0:{_port()}",
        "GRPC_API_KEYS": "",
    }
    refused = ServiceProcess("producer", env, services.log_dir, "refused").start()
    services.started.append(refused)
    assert refused.process is not None
    assert refused.process.wait(30) == 2
    assert "GRPC_AUTH=none" in refused.log()

    opened = services.producer(
        log_name="open", GRPC_LISTEN=env["GRPC_LISTEN"], GRPC_API_KEYS="", GRPC_AUTH="none"
    )
    opened.wait_log("GRPC_AUTH=none: every caller may create and read every order")
    stub = orders_pb2_grpc.OrderServiceStub(
        grpc.insecure_channel(env["GRPC_LISTEN"].replace("0.0.0.0", "127.0.0.1"))
    )
    assert stub.CreateOrder(order_request(), timeout=10).order_id


def test_the_client_with_a_wrong_key_says_so_in_one_spanish_line_and_sends_nothing(
    services: Services,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    producer = services.producer()
    address = producer.env["GRPC_LISTEN"]
    argv = ["--count", "3", "--email", "clave@example.cl", "--yes", "--address", address]

    monkeypatch.setenv("PRODUCER_API_KEY", create_key("nadie", ["orders:create"])[0])
    assert client_main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "El productor rechazó la credencial: revisa PRODUCER_API_KEY (o el certificado de cliente)."
    ]

    monkeypatch.delenv("PRODUCER_API_KEY")
    assert client_main(argv) == 1
    assert capsys.readouterr().err.strip().startswith("El productor rechazó la credencial")

    # A key that may create orders but not read them: `status` says what is missing.
    reader_line = create_key("solo-crear", ["orders:create"])
    services.producer(
        log_name="creator-only",
        GRPC_LISTEN=f"127.0.0.1:{_port()}",
        GRPC_API_KEYS=f"{services.env['GRPC_API_KEYS']};{reader_line[1]}",
    )
    monkeypatch.setenv("PRODUCER_API_KEY", reader_line[0])
    last = services.started[-1].env["GRPC_LISTEN"]
    assert client_main(["status", str(uuid.uuid4()), "--address", last]) == 1
    assert capsys.readouterr().err.strip() == (
        "La clave de PRODUCER_API_KEY no tiene permiso para consultar pedidos (orders:read)."
    )
    # Nothing was published by the refused runs.
    assert topic_size(services.env["KAFKA_BOOTSTRAP_SERVERS"], services.env["PEDIDOS_TOPIC"]) == 0
