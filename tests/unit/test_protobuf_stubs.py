"""The committed stubs must be exactly what protoc generates from protos/ today."""

from pathlib import Path

from pedidos.wire.protobuf_stubs import generate

STUBS = Path(__file__).resolve().parents[2] / "pedidos" / "v1"


def test_committed_stubs_are_not_stale(tmp_path: Path) -> None:
    generate(tmp_path)
    generated = sorted((tmp_path / "pedidos" / "v1").glob("orders_pb2*"))
    assert [p.name for p in generated] == [
        "orders_pb2.py",
        "orders_pb2.pyi",
        "orders_pb2_grpc.py",
        "orders_pb2_grpc.pyi",
    ]
    for fresh in generated:
        assert (STUBS / fresh.name).read_text() == fresh.read_text(), (
            f"{fresh.name} is stale: run `make proto` and commit the result"
        )
