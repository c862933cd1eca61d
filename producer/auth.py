"""Who may call what: an interceptor that checks every OrderService call's credential.

A caller presents an API key (`authorization: Bearer <key>` metadata) or, with
GRPC_TLS_CLIENT_CA, a client certificate whose subject GRPC_TLS_CLIENT_PERMISSIONS maps to
permissions. No usable credential is UNAUTHENTICATED, a credential without the method's
permission PERMISSION_DENIED; both are decided before the method runs, so neither says whether
an order exists. Health and reflection stay open.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from pedidos.runtime.api_keys import (
    ORDERS_CREATE,
    ORDERS_READ,
    KeyVerifier,
    Principal,
    parse_keys,
    parse_permissions,
)
from pedidos.runtime.config import Settings

log = logging.getLogger(__name__)

_SERVICE = "/pedidos.v1.OrderService/"
# The permission each OrderService method needs; a method missing here is refused to everyone.
REQUIRED: dict[str, str] = {
    _SERVICE + "CreateOrder": ORDERS_CREATE,
    _SERVICE + "CreateOrders": ORDERS_CREATE,
    _SERVICE + "CreateOrderBatch": ORDERS_CREATE,
    _SERVICE + "GetOrder": ORDERS_READ,
    _SERVICE + "WatchOrder": ORDERS_READ,
}
_BEARER = "bearer "
_MISSING = "se requiere una credencial: authorization: Bearer <clave> o un certificado de cliente"
_DENIED = "la credencial no tiene el permiso {permission}"


class InsecureStart(Exception):
    """The producer would listen beyond this machine with no credential configured."""


@dataclass(frozen=True, slots=True)
class Authenticator:
    """Turns a call's metadata and TLS peer into a principal (or None)."""

    keys: KeyVerifier
    subjects: Mapping[str, Principal]

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        subjects = {
            subject: Principal(subject, parse_permissions(permissions))
            for subject, permissions in settings.grpc_tls_client_permissions.items()
        }
        return cls(KeyVerifier(parse_keys(settings.grpc_api_keys)), subjects)

    def principal(self, context: grpc.aio.ServicerContext) -> Principal | None:
        presented = _bearer(context.invocation_metadata())
        if presented is not None:
            return self.keys.verify(presented)
        if self.subjects:
            return self._certificate_principal(context.auth_context())
        return None

    def _certificate_principal(self, auth: Mapping[str, Any]) -> Principal | None:
        # Present only when gRPC verified the certificate against GRPC_TLS_CLIENT_CA.
        for property_name in ("x509_subject", "x509_common_name"):
            for value in auth.get(property_name, ()):
                principal = self.subjects.get(value.decode(errors="replace"))
                if principal is not None:
                    return principal
        return None


def _bearer(metadata: Any) -> str | None:
    for item in metadata or ():
        key, value = item
        if key == "authorization":
            if isinstance(value, str) and value[:7].lower() == _BEARER:
                return value[7:].strip()
            return ""  # present but unusable: refused like a wrong key
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each OrderService handler once (handlers are per method) with the check."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(_SERVICE):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = _guard(
                handler, REQUIRED.get(method), self._authenticator
            )
        return wrapped


def _guard(
    handler: grpc.RpcMethodHandler[Any, Any],
    permission: str | None,
    authenticator: Authenticator,
) -> grpc.RpcMethodHandler[Any, Any]:
    async def check(context: grpc.aio.ServicerContext) -> None:
        principal = authenticator.principal(context)
        if principal is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, _MISSING)
        elif permission is None or permission not in principal.permissions:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, _DENIED.format(permission=permission)
            )

    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behavior = getattr(handler, kind)
        if behavior is not None:
            return handler._replace(**{kind: _wrap(behavior, check)})  # type: ignore[attr-defined]
    return handler


def _wrap(
    behavior: Callable[..., Any], check: Callable[[grpc.aio.ServicerContext], Awaitable[None]]
) -> Callable[..., Any]:
    # gRPC treats async generator functions differently from coroutines: keep the kind.
    if inspect.isasyncgenfunction(behavior):

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await check(context)
            async for response in behavior(request, context):
                yield response

        return streaming

    async def single(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await check(context)
        return await behavior(request, context)

    return single


def interceptors(settings: Settings) -> list[grpc.aio.ServerInterceptor]:
    """The auth interceptor, or none when authentication is off; InsecureStart when the
    producer would listen beyond loopback with no credential and GRPC_AUTH is not `none`."""
    if settings.grpc_auth == "none":
        log.warning("GRPC_AUTH=none: every caller may create and read every order")
        return []
    authenticator = Authenticator.from_settings(settings)
    if authenticator.keys.configured or settings.grpc_tls_client_ca:
        return [AuthInterceptor(authenticator)]
    if not is_loopback(settings.grpc_listen):
        raise InsecureStart(
            f"GRPC_LISTEN={settings.grpc_listen} is reachable from other machines and no "
            "credential is configured: set GRPC_API_KEYS (python -m admin api-key create) or "
            "GRPC_TLS_CLIENT_CA, or GRPC_AUTH=none to run without authentication"
        )
    log.warning("no credential configured: open to every caller on this machine (loopback)")
    return []


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
