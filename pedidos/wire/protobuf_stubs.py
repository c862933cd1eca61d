"""Generates the Python stubs of protos/ (`make proto`, staleness test).

grpcio-tools writes the messages and the service code; mypy-protobuf's `protoc-gen-mypy_grpc`
writes `orders_pb2_grpc.pyi`, which types every stub method (request, response, sync or aio) so
that mypy checks each RPC call.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parents[2] / "protos"
PROTO_FILES = ("pedidos/v1/orders.proto",)
GRPC_TYPING_PLUGIN = "protoc-gen-mypy_grpc"


def _typing_plugin() -> str:
    """The plugin installed beside this interpreter (a venv not on PATH), else the one on PATH."""
    beside = Path(sys.executable).parent / GRPC_TYPING_PLUGIN
    if beside.exists():
        return str(beside)
    found = shutil.which(GRPC_TYPING_PLUGIN)
    if found is None:
        raise RuntimeError(f"{GRPC_TYPING_PLUGIN} not found: install mypy-protobuf (dev extras)")
    return found


def generate(out_dir: Path) -> None:
    include = Path(protoc.__file__).parent / "_proto"
    for proto in PROTO_FILES:
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"-I{include}",
                f"--python_out={out_dir}",
                f"--pyi_out={out_dir}",
                f"--grpc_python_out={out_dir}",
                f"--plugin={GRPC_TYPING_PLUGIN}={_typing_plugin()}",
                f"--mypy_grpc_out=quiet:{out_dir}",
                str(PROTO_ROOT / proto),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed for {proto} (exit {code})")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT.parent)
