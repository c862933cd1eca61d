"""keep_grpc_aio_runtime: gRPC's asyncio runtime survives the end of an `asyncio.run`.

Each case runs in a child process: this test process holds the runtime already (conftest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, json, sys, threading, time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from pedidos.runtime.grpc_aio import keep_grpc_aio_runtime

server = grpc.server(futures.ThreadPoolExecutor(2))
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
server.start()
if sys.argv[1] == "kept":
    keep_grpc_aio_runtime()
    keep_grpc_aio_runtime()


def pollers():
    # gRPC's poller thread runs PollerCompletionQueue._poll_wrapper while its runtime is up.
    return [t.ident for t in threading.enumerate() if "_poll" in repr(getattr(t, "_target", ""))]


def pollers_after_run():
    # A runtime shut down stops its poller thread soon after, not by the time asyncio.run
    # returns (seen alive there once in a loaded CI run); one kept stays for the whole wait.
    deadline = time.monotonic() + 1.0
    while (found := pollers()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


async def check():
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        return reply.status == health_pb2.HealthCheckResponse.SERVING, pollers()


rounds = []
for _ in range(3):
    serving, during = asyncio.run(check())
    rounds.append({"serving": serving, "during": during, "after": pollers_after_run()})
print(json.dumps(rounds))
"""


def rounds(mode: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_the_runtime_kept_lives_across_asyncio_runs_with_one_poller() -> None:
    seen = rounds("kept")
    assert all(r["serving"] for r in seen)
    first = seen[0]["during"]
    assert isinstance(first, list)
    assert len(first) == 1
    assert all(r["during"] == first and r["after"] == first for r in seen)


def test_without_it_grpc_shuts_the_runtime_down_after_each_run() -> None:
    # The control: what keep_grpc_aio_runtime prevents still happens in this gRPC version.
    seen = rounds("default")
    assert all(r["serving"] for r in seen)
    assert all(r["during"] and r["after"] == [] for r in seen)
