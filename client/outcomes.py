"""What happened to each order sent, whatever the RPC (unary, batch or stream), and the report."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The producer confirmed the order (Kafka has it) and answered its id."""

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


Outcome = Confirmed | Rejected | Failed
OnOutcome = Callable[[Outcome], None]


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
    """What happened to every order sent, each list in the orders' order."""

    accepted: tuple[Confirmed, ...]
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

    on_outcome: OnOutcome | None = None
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
            accepted=tuple(o for o in ordered if isinstance(o, Confirmed)),
            rejected=tuple(o for o in ordered if isinstance(o, Rejected)),
            failed=tuple(o for o in ordered if isinstance(o, Failed)),
            elapsed_s=elapsed_s,
        )
