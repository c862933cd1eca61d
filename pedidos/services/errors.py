"""Why a use case refuses: one reason per thing the caller can do about it.

The service layer raises these; each entrypoint maps a reason to its own vocabulary (the
producer to gRPC status codes, in one table), so no service knows about gRPC.
"""

from __future__ import annotations

from enum import Enum


class Reason(Enum):
    INVALID = "invalid"  # the input breaks a rule: fix it
    CONFLICT = "conflict"  # an idempotency key reused for a different order: use a new key
    NOT_FOUND = "not_found"  # no such order (yet)
    UNAVAILABLE = "unavailable"  # a dependency did not answer in time: retry (with the same key)
    CORRUPT = "corrupt"  # what we stored is unreadable: our fault, not the caller's


class ServiceError(Exception):
    """A refusal the caller is told about; `message` is for people, `reason` for programs."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class OrderRejected(ServiceError):
    """The intake refuses an order for good: bad input or a reused key."""


class NotAcknowledged(ServiceError):
    """The broker did not acknowledge an order in time: it must not be reported accepted."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.UNAVAILABLE, message)


class TrackingError(ServiceError):
    """GetOrder/WatchOrder cannot answer: a malformed or unknown id, or the store is down."""
