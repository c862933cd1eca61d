"""gRPC transport security: TLS when certificates are configured, plaintext otherwise; the
client's API key sent as `authorization: Bearer <key>` on every call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from pedidos.runtime.grpc_tracing import client_interceptors


def server_credentials(
    cert_file: str, key_file: str, client_ca_file: str | None = None
) -> grpc.ServerCredentials:
    """TLS with this certificate; with `client_ca_file`, mutual TLS: every client presents a
    certificate signed by that CA (the handshake fails otherwise)."""
    pair = [(Path(key_file).read_bytes(), Path(cert_file).read_bytes())]
    if client_ca_file:
        return grpc.ssl_server_credentials(
            pair, root_certificates=Path(client_ca_file).read_bytes(), require_client_auth=True
        )
    return grpc.ssl_server_credentials(pair)


def authorization(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),)


class _BearerKey:
    """Adds the key to every call's metadata. Metadata rather than call credentials: gRPC only
    sends call credentials over TLS, and plaintext on a private network is still allowed."""

    def __init__(self, api_key: str) -> None:
        self._metadata = authorization(api_key)

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *self._metadata)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


# One class per kind of call: grpc.aio files an interceptor under the first kind it matches.
class _UnaryUnary(_BearerKey, grpc.aio.UnaryUnaryClientInterceptor):
    intercept_unary_unary = _BearerKey._call  # type: ignore[assignment]


class _UnaryStream(_BearerKey, grpc.aio.UnaryStreamClientInterceptor):
    intercept_unary_stream = _BearerKey._call  # type: ignore[assignment]


class _StreamUnary(_BearerKey, grpc.aio.StreamUnaryClientInterceptor):
    intercept_stream_unary = _BearerKey._call  # type: ignore[assignment]


class _StreamStream(_BearerKey, grpc.aio.StreamStreamClientInterceptor):
    intercept_stream_stream = _BearerKey._call  # type: ignore[assignment]


def bearer_interceptors(api_key: str) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that send `api_key` on every call of an aio channel."""
    return [kind(api_key) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


def open_channel(
    address: str,
    ca_file: str | None = None,
    api_key: str | None = None,
    client_cert: tuple[str, str] | None = None,
) -> grpc.aio.Channel:
    """A channel to the producer; TLS verified against `ca_file` when one is given (with
    `client_cert` = (certificate, key) files for mutual TLS); `api_key` on every call; its
    calls traced when tracing is on."""
    interceptors = [
        *client_interceptors(),
        *(bearer_interceptors(api_key) if api_key else ()),
    ] or None
    if ca_file:
        cert, key = (Path(f).read_bytes() for f in client_cert) if client_cert else (None, None)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(ca_file).read_bytes(), private_key=key, certificate_chain=cert
        )
        return grpc.aio.secure_channel(address, credentials, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, interceptors=interceptors)
