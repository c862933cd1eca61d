"""The client's link to the producer: a ready channel, typed stubs, which codes are retried and
how long to wait between attempts (the shared backoff of pedidos.runtime.retry)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import grpc

from pedidos.runtime.config import Settings
from pedidos.runtime.grpc_tls import open_channel
from pedidos.runtime.retry import Backoff
from pedidos.v1 import orders_pb2, orders_pb2_grpc

if TYPE_CHECKING:
    # Exists only in the generated .pyi: what OrderServiceStub(aio channel) returns.
    from pedidos.v1.orders_pb2_grpc import OrderServiceAsyncStub

Stub = TypeVar("Stub")

# Only these mean "Kafka may not have the order yet": the same idempotency key makes a retry safe.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = Backoff(initial_s=0.2, max_s=2.0)
# Per-order results carry the status code as its number.
STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

# Retries show in each outcome's attempt count; a log line per retry would print over the
# progress bar (the CLI configures no logging, so Python would write warnings to stderr).
retry_log = logging.getLogger("client.retries")
retry_log.addHandler(logging.NullHandler())
retry_log.propagate = False


class ProducerUnreachable(Exception):
    """No connection to the producer could be made within the deadline."""

    def __init__(self, address: str, timeout_s: float) -> None:
        super().__init__(
            f"No se pudo conectar con el productor en {address} "
            f"(esperé {timeout_s:g} s). ¿Está en marcha el servicio?"
        )
        self.address = address


class AccessRefused(Exception):
    """The producer refused our credential (UNAUTHENTICATED) or its permissions."""

    def __init__(self, code: grpc.StatusCode) -> None:
        if code == grpc.StatusCode.PERMISSION_DENIED:
            text = (
                "La clave de PRODUCER_API_KEY no tiene permiso para esta operación "
                "(pide una con orders:create u orders:read según el caso)."
            )
        else:
            text = (
                "El productor rechazó la credencial: revisa PRODUCER_API_KEY "
                "(o el certificado de cliente)."
            )
        super().__init__(text)
        self.code = code


REFUSALS = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


@dataclass(frozen=True)
class ChannelSecurity:
    """How the client proves who it is: TLS trust, optional client certificate, API key."""

    tls_ca: str | None = None
    api_key: str | None = None
    client_cert: tuple[str, str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ChannelSecurity:
        cert, key = settings.grpc_tls_client_cert, settings.grpc_tls_client_key
        return cls(
            settings.grpc_tls_ca,
            settings.producer_api_key.get_secret_value() if settings.producer_api_key else None,
            (cert, key) if cert and key else None,
        )


async def check_create_access(channel: grpc.aio.Channel, timeout_s: float) -> None:
    """AccessRefused unless we may create orders: an empty CreateOrderBatch publishes nothing
    and passes through the same check as every order would."""
    try:
        await orders_pb2_grpc.OrderServiceStub(channel).CreateOrderBatch(
            orders_pb2.CreateOrderBatchRequest(), timeout=timeout_s
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() in REFUSALS:
            raise AccessRefused(exc.code()) from None


def status_from_number(number: int) -> grpc.StatusCode:
    return STATUS_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def order_service_stub(stub_or_channel: Stub | grpc.aio.Channel) -> Stub | OrderServiceAsyncStub:
    """The stub given, or the generated OrderService stub on the `grpc.aio.Channel` given."""
    if isinstance(stub_or_channel, grpc.aio.Channel):
        return orders_pb2_grpc.OrderServiceStub(stub_or_channel)
    return stub_or_channel


@contextlib.asynccontextmanager
async def connected(
    address: str, timeout_s: float, security: ChannelSecurity | None = None
) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the producer; ProducerUnreachable if it cannot connect within `timeout_s`.

    Connecting first turns "nobody listens there" into one clear error instead of every call
    failing after its retries."""
    security = security or ChannelSecurity()
    async with open_channel(
        address, security.tls_ca, security.api_key, security.client_cert
    ) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout=timeout_s)
        except TimeoutError:
            raise ProducerUnreachable(address, timeout_s) from None
        yield channel


class RetryableCall(Exception):
    """A call answered with a RETRYABLE_CODES status: raised so that retry_async tries again."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
