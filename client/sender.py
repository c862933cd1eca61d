"""CreateOrder calls with bounded concurrency, a deadline per call and retries with backoff."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

from pedidos.runtime.grpc_tls import open_channel
from pedidos.v1 import orders_pb2, orders_pb2_grpc

# Only these mean "Kafka may not have the order yet": the same idempotency key makes a retry safe.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
DEFAULT_RETRIES = 3


class ProducerUnreachable(Exception):
    """No connection to the producer could be made within the deadline."""

    def __init__(self, address: str, timeout_s: float) -> None:
        super().__init__(
            f"No se pudo conectar con el productor en {address} "
            f"(esperé {timeout_s:g} s). ¿Está en marcha el servicio?"
        )
        self.address = address


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, so retrying clients do not hit the producer in step."""

    base_s: float = 0.2
    max_s: float = 2.0

    def delay(self, retry: int, rng: random.Random) -> float:
        """Pause before retry number `retry` (1-based)."""
        return rng.uniform(0, min(self.max_s, self.base_s * 2 ** (retry - 1)))


@dataclass(frozen=True, slots=True)
class Accepted:
    index: int
    idempotency_key: str
    order_id: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """The producer answered with a definitive error (bad input, reused key, ...)."""

    index: int
    idempotency_key: str
    code: grpc.StatusCode
    message: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Failed:
    """A retryable error that persisted through every retry: the order may or may not exist."""

    index: int
    idempotency_key: str
    code: grpc.StatusCode
    message: str
    attempts: int


Outcome = Accepted | Rejected | Failed


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    code: grpc.StatusCode
    message: str
    count: int


def _group(errors: Iterable[Rejected | Failed]) -> list[ErrorGroup]:
    counts = Counter((error.code, error.message) for error in errors)
    return [
        ErrorGroup(code, message, count)
        for (code, message), count in sorted(
            counts.items(), key=lambda item: (-item[1], item[0][0].name)
        )
    ]


@dataclass(frozen=True, slots=True)
class SendReport:
    """What happened to every order of a batch, each list in the batch's order."""

    accepted: tuple[Accepted, ...]
    rejected: tuple[Rejected, ...]
    failed: tuple[Failed, ...]
    elapsed_s: float

    @property
    def sent(self) -> int:
        return len(self.accepted) + len(self.rejected) + len(self.failed)

    @property
    def order_ids(self) -> list[str]:
        return [outcome.order_id for outcome in self.accepted]

    @property
    def all_accepted(self) -> bool:
        return not self.rejected and not self.failed

    @property
    def rate_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def rejection_groups(self) -> list[ErrorGroup]:
        return _group(self.rejected)

    def failure_groups(self) -> list[ErrorGroup]:
        return _group(self.failed)


@dataclass(slots=True)
class OutcomeCollector:
    """Outcomes in the order they settle; the report puts them back in the orders' order."""

    on_outcome: Callable[[Outcome], None] | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    async def run(
        self, concurrency: int, worker: Callable[[], Coroutine[Any, Any, None]]
    ) -> SendReport:
        """Run `concurrency` copies of `worker` (which add outcomes) and report, timed."""
        started = time.monotonic()
        async with asyncio.TaskGroup() as workers:
            for _ in range(concurrency):
                workers.create_task(worker())
        return self.report(time.monotonic() - started)

    def report(self, elapsed_s: float) -> SendReport:
        ordered = sorted(self.outcomes, key=lambda outcome: outcome.index)
        return SendReport(
            accepted=tuple(o for o in ordered if isinstance(o, Accepted)),
            rejected=tuple(o for o in ordered if isinstance(o, Rejected)),
            failed=tuple(o for o in ordered if isinstance(o, Failed)),
            elapsed_s=elapsed_s,
        )


def order_service_stub(stub_or_channel: Any) -> Any:
    """An OrderService stub, given one or a `grpc.aio.Channel`."""
    if isinstance(stub_or_channel, grpc.aio.Channel):
        return orders_pb2_grpc.OrderServiceStub(stub_or_channel)
    return stub_or_channel


async def _send_one(
    stub: Any,
    index: int,
    request: orders_pb2.CreateOrderRequest,
    deadline_s: float,
    retries: int,
    backoff: Backoff,
    rng: random.Random,
) -> Outcome:
    key = request.idempotency_key
    attempt = 0
    while True:
        attempt += 1
        try:
            # The same request (and so the same idempotency key) on every attempt.
            response = await stub.CreateOrder(request, timeout=deadline_s)
        except grpc.aio.AioRpcError as exc:
            code, message = exc.code(), exc.details() or ""
            if code not in RETRYABLE_CODES:
                return Rejected(index, key, code, message, attempt)
            if attempt > retries:
                return Failed(index, key, code, message, attempt)
            await asyncio.sleep(backoff.delay(attempt, rng))
        else:
            return Accepted(index, key, response.order_id, attempt)


async def send_orders(
    stub_or_channel: Any,
    orders: Iterable[orders_pb2.CreateOrderRequest],
    concurrency: int,
    deadline_s: float,
    retries: int = DEFAULT_RETRIES,
    *,
    backoff: Backoff | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    rng: random.Random | None = None,
) -> SendReport:
    """Send every order with at most `concurrency` calls in flight, and report each outcome.

    `stub_or_channel` is an OrderService stub or a `grpc.aio.Channel`. Every call has a deadline
    of `deadline_s`; UNAVAILABLE and DEADLINE_EXCEEDED are retried up to `retries` times.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    stub = order_service_stub(stub_or_channel)
    backoff = backoff or Backoff()
    rng = rng or random.Random()
    # A fixed pool of workers sharing one iterator, rather than a task per order, keeps memory
    # flat for big batches and lets `orders` be a lazy generator.
    pending = enumerate(orders)
    collector = OutcomeCollector(on_outcome)

    async def worker() -> None:
        for index, request in pending:
            collector.add(await _send_one(stub, index, request, deadline_s, retries, backoff, rng))

    return await collector.run(concurrency, worker)


async def send_to_producer(
    address: str,
    orders: Iterable[orders_pb2.CreateOrderRequest],
    concurrency: int,
    deadline_s: float,
    retries: int = DEFAULT_RETRIES,
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
    tls_ca: str | None = None,
    batch_size: int | None = None,
) -> SendReport:
    """Connect to the producer at `address` and send the batch; ProducerUnreachable if it is down.

    Connecting first turns "nobody listens there" into one clear error instead of every order
    failing after its retries. Without `batch_size` each order is one CreateOrder call; with it,
    orders go in CreateOrderBatch calls of `batch_size`, `concurrency` calls in flight.
    """
    # Imported here: batch_sender builds on this module's outcomes and backoff.
    from client.batch_sender import send_batches

    async with open_channel(address, tls_ca) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout=deadline_s)
        except TimeoutError:
            raise ProducerUnreachable(address, deadline_s) from None
        if batch_size is not None:
            return await send_batches(
                channel, orders, batch_size, concurrency, deadline_s, retries, on_outcome=on_outcome
            )
        return await send_orders(
            channel, orders, concurrency, deadline_s, retries, on_outcome=on_outcome
        )
