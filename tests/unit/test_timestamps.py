"""Timestamps written back from the text they were read from, and formatted otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pedidos.wire import timestamps
from pedidos.wire.timestamps import ParsedTimestamp, iso_z, iso_z_uncached, parse_iso, stamped

SPECS = ("microseconds", "milliseconds")
UTC_TIMES = st.datetimes(
    min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)


@given(UTC_TIMES)
def test_a_timestamp_read_back_is_written_as_if_formatted(value: datetime) -> None:
    parsed = parse_iso(iso_z_uncached(value, "microseconds"))
    assert type(parsed) is ParsedTimestamp
    assert parsed == value
    for spec in SPECS:
        assert iso_z(parsed, spec) == iso_z_uncached(value, spec)


@given(UTC_TIMES, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)))
def test_arithmetic_on_a_read_timestamp_formats_the_new_value(
    value: datetime, delta: timedelta
) -> None:
    """datetime's own constructors keep the subclass but not the text."""
    later = parse_iso(iso_z_uncached(value, "microseconds")) + delta
    for spec in SPECS:
        assert iso_z(later, spec) == iso_z_uncached(value + delta, spec)


@given(st.text(alphabet="0123456789-:T.ZW+ ٣", min_size=20, max_size=32))
def test_any_text_that_parses_is_written_as_its_value_formats(text: str) -> None:
    try:
        parsed = parse_iso(text)
    except ValueError:
        return
    if parsed.tzinfo is None:
        return
    for spec in SPECS:
        assert iso_z(parsed, spec) == iso_z_uncached(parsed, spec)


def test_other_offsets_and_shapes_are_parsed_as_before() -> None:
    # The week date has the canonical length and a "T", "." and "Z" where it has them.
    week_date = "2026-W47-1T12:00:00.123456Z"
    assert iso_z(parse_iso(week_date), "microseconds") == "2026-11-16T12:00:00.123456Z"
    for text in ("2026-11-23T09:00:00.000000-03:00", "2026-11-23T12:00:00Z", week_date):
        parsed = parse_iso(text)
        assert type(parsed) is datetime
        assert parsed == datetime.fromisoformat(text)
    assert iso_z(parse_iso("2026-11-23T09:00:00.000000-03:00"), "milliseconds") == (
        "2026-11-23T09:00:00.000-03:00"
    )
    assert parse_iso("2026-11-23T12:00:00.000000Z") == datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert parse_iso("2026-11-23T12:00:00.000000Z").tzinfo is UTC


def test_a_stamped_time_is_the_same_time_and_writes_as_a_slice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime(2026, 12, 6, 8, 30, 1, 234567, tzinfo=UTC)
    expected = {spec: iso_z(now, spec) for spec in SPECS}
    at = stamped(now)
    assert at == now
    assert type(at) is ParsedTimestamp
    assert at + timedelta(seconds=1) == now + timedelta(seconds=1)

    def no_formatting(*_: object) -> str:
        raise AssertionError("formatted again")

    monkeypatch.setattr(timestamps, "_format_utc", no_formatting)
    monkeypatch.setattr(timestamps, "iso_z_uncached", no_formatting)
    assert {spec: iso_z(at, spec) for spec in expected} == expected
    # Another offset is left alone (it would format differently).
    chile = datetime(2026, 12, 6, 5, 30, tzinfo=timezone(timedelta(hours=-3)))
    assert stamped(chile) is chile
