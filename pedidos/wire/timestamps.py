"""ISO-8601 text for timestamps, with `Z` for UTC.

Cached: an order's records and documents format the same timestamps again at every state.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


def iso_z_uncached(value: datetime, timespec: str) -> str:
    """`iso_z` for a timestamp formatted once (a new order's acceptance)."""
    return value.isoformat(timespec=timespec).replace("+00:00", "Z")


_format_utc = lru_cache(maxsize=16_384)(iso_z_uncached)


def iso_z(value: datetime, timespec: str) -> str:
    # Only UTC values are cached: equal datetimes with other offsets would share one entry but
    # format differently.
    return _format_utc(value, timespec) if value.tzinfo is UTC else iso_z_uncached(value, timespec)
