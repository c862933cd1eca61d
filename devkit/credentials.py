"""The credentials of the services the devkit starts (tests, bench, demo): one API key with
every permission and one order-id secret per Python process, so authentication is on wherever
the pipeline runs, and the client side of the same process can call the producer."""

from __future__ import annotations

import os
import secrets
from functools import cache
from pathlib import Path
from typing import Any

import grpc

from pedidos.runtime.api_keys import PERMISSIONS, create_key
from pedidos.runtime.grpc_tls import authorization, bearer_interceptors

# Where a process hands its key to the processes it starts (the bench's load workers are
# spawned: they import this module afresh and would otherwise draw a key of their own).
KEY_ENV = "PEDIDOS_DEVKIT_API_KEY"
LINE_ENV = "PEDIDOS_DEVKIT_API_KEY_LINE"


@cache
def dev_key() -> tuple[str, str]:
    """(key, GRPC_API_KEYS line) of the `devkit` key: this process's parent's if it had one."""
    key, line = os.environ.get(KEY_ENV), os.environ.get(LINE_ENV)
    if not (key and line):
        key, line = create_key("devkit", PERMISSIONS)
        os.environ[KEY_ENV], os.environ[LINE_ENV] = key, line
    return key, line


@cache
def _order_id_secret() -> str:
    return secrets.token_hex(32)


def credentials_env() -> dict[str, str]:
    """What the producer needs to check the key (its hash only), the client to present it, and
    every producer replica to derive the same keyed order ids."""
    key, line = dev_key()
    return {
        "GRPC_API_KEYS": line,
        "PRODUCER_API_KEY": key,
        "ORDER_ID_SECRET": _order_id_secret(),
    }


def call_metadata() -> tuple[tuple[str, str], ...]:
    """`metadata=` for a call made with a plain stub in tests and the bench."""
    return authorization(dev_key()[0])


class _Metadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def _add(self, continuation, details, request):  # type: ignore[no-untyped-def]
        metadata = [*(details.metadata or ()), *call_metadata()]
        return continuation(details._replace(metadata=metadata), request)

    intercept_unary_unary = _add
    intercept_unary_stream = _add
    intercept_stream_unary = _add
    intercept_stream_stream = _add


def producer_channel(address: str, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
    """A blocking plaintext channel to a devkit producer that presents the devkit key."""
    return grpc.intercept_channel(grpc.insecure_channel(address, options=options), _Metadata())


def aio_producer_channel(
    address: str, options: list[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """The asyncio counterpart of `producer_channel`."""
    return grpc.aio.insecure_channel(
        address, options=options, interceptors=bearer_interceptors(dev_key()[0])
    )


def stored_credentials(path: Path) -> dict[str, str]:
    """Credentials kept in `path` (created once, readable by its owner only), for services run
    by hand on `python -m admin stack up`: the same key on every `stack env`."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.writelines(f"{name}={value}\n" for name, value in credentials_env().items())
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: value for name, value in pairs}
