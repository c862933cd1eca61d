"""ISO-8601 text for timestamps, with `Z` for UTC, and back.

An order's records and documents write the same timestamps again at every state. A timestamp
read from a record keeps the text it was read from (`parse_iso`), so writing it again is a
slice; one this process made is formatted through a cache. Under a backlog the cache alone
missed two calls in three: thousands of orders walk at once, each with a dozen timestamps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

# "2026-12-03T09:28:02.123456Z": what `iso_z(..., "microseconds")` writes for a UTC value.
_MICROS_LEN = 27
_MILLIS_LEN = 23  # the same text up to the milliseconds, before its "Z"


class ParsedTimestamp(datetime):
    """A datetime that was read from canonical UTC text (`text`). The datetime's own
    constructors (arithmetic, `replace`) make instances without `text`: only `parse_iso` sets
    it, so it always is this very value's text. orjson serializes exact datetimes only: this
    project writes timestamps as text, through `iso_z`."""

    __slots__ = ("text",)
    text: str


def _canonical(text: str) -> bool:
    """The separators of "YYYY-MM-DDTHH:MM:SS.ffffffZ" (for text fromisoformat accepts, the
    rest are then ASCII digits; a week date, "2026-W47-1T…", has no "-" at 7)."""
    return (
        len(text) == _MICROS_LEN
        and text[4] == text[7] == "-"
        and text[10] == "T"
        and text[13] == text[16] == ":"
        and text[19] == "."
        and text[26] == "Z"
    )


def parse_iso(text: str) -> datetime:
    """`datetime.fromisoformat`, remembering canonical UTC text (raises its ValueError). The
    shape check is enough: such text parses field by field into a value that formats back to
    the same characters (fromisoformat takes ASCII digits only, and refuses what is out of
    range)."""
    if not _canonical(text):
        return datetime.fromisoformat(text)
    parsed = ParsedTimestamp.fromisoformat(text)
    parsed.text = text
    return parsed


def stamped(value: datetime) -> datetime:
    """`value` with its text made once, now, for a timestamp this process makes and writes
    again and again (a state entered: its e-mail, documents and record, and every later
    state's); as `parse_iso` gives. Values not in UTC are returned as they are."""
    if value.tzinfo is not UTC:
        return value
    return parse_iso(iso_z_uncached(value, "microseconds"))


def iso_z_uncached(value: datetime, timespec: str) -> str:
    """`iso_z` for a timestamp formatted once (a new order's acceptance)."""
    return value.isoformat(timespec=timespec).replace("+00:00", "Z")


_format_utc = lru_cache(maxsize=16_384)(iso_z_uncached)


def iso_z(value: datetime, timespec: str) -> str:
    """`timespec` is "microseconds" (records) or "milliseconds" (documents)."""
    if type(value) is ParsedTimestamp and hasattr(value, "text"):
        if timespec == "microseconds":
            return value.text
        if timespec == "milliseconds":
            return value.text[:_MILLIS_LEN] + "Z"
    # Only UTC values are cached: equal datetimes with other offsets would share one entry but
    # format differently.
    return _format_utc(value, timespec) if value.tzinfo is UTC else iso_z_uncached(value, timespec)
