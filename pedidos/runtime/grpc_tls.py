"""gRPC transport security: TLS when certificates are configured, plaintext otherwise."""

from __future__ import annotations

from pathlib import Path

import grpc

from pedidos.runtime.grpc_tracing import client_interceptors


def server_credentials(cert_file: str, key_file: str) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(Path(key_file).read_bytes(), Path(cert_file).read_bytes())]
    )


def open_channel(address: str, ca_file: str | None = None) -> grpc.aio.Channel:
    """A channel to the producer; TLS verified against `ca_file` when one is given; its calls
    traced when tracing is on."""
    interceptors = client_interceptors() or None
    if ca_file:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes())
        return grpc.aio.secure_channel(address, credentials, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, interceptors=interceptors)
