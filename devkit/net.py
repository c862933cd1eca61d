"""Loopback ports and readiness probes: a free port for a server, and whether a server answers."""

from __future__ import annotations

import contextlib
import random
import socket
import urllib.error
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (a service's workers serve on port + N)."""
    for _ in range(100):
        first = free_port()
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def free_port() -> int:
    """A free port *below* the kernel's ephemeral range: a server restarted on it (the broker in
    the crash tests) cannot find it taken by some client's outgoing connection meanwhile."""
    low, _ = _ephemeral_ports()
    if low > 10_000:
        for _ in range(100):
            port = random.randrange(10_000, low)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def smtp_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(64).startswith(b"220")
    except OSError:
        return False


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except OSError:
        return False


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of a GET on a loopback port, error statuses included."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def kafka_ready(port: int) -> bool:
    if not port_open(port):
        return False
    from confluent_kafka.admin import AdminClient

    client = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "socket.timeout.ms": 2000})
    try:
        client.list_topics(timeout=2)
        return True
    except Exception:
        return False


def producer_healthy(address: str) -> bool:
    """The producer at `address` answers the standard gRPC health check with SERVING."""
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
