"""The JSON log lines: the faster formatter writes what python-json-logger's writes."""

import logging
import sys
from datetime import UTC, datetime
from enum import Enum

import pytest
from pythonjsonlogger.json import JsonFormatter

from pedidos.runtime.logs import json_formatter, mask_email


class Colour(Enum):
    RED = "rojo"


def _stock(component: str) -> JsonFormatter:
    """The formatter as configured before it was made faster."""
    return JsonFormatter(
        "{asctime}{levelname}{name}{process}{message}",
        style="{",
        rename_fields={"asctime": "ts", "levelname": "level", "name": "logger", "process": "pid"},
        static_fields={"component": component},
    )


def _record(
    msg: object, *, extra: dict[str, object] | None = None, exc: bool = False
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    logger = logging.getLogger("pedidos.test")
    return logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        1,
        msg,
        ("x",) if "%s" in str(msg) else (),
        exc_info,
        extra=extra,
    )


@pytest.mark.parametrize(
    "record",
    [
        lambda: _record(
            "order state reached", extra={"order_id": "1", "state": "Preparación", "email": "sent"}
        ),
        lambda: _record("plain %s"),
        lambda: _record("failed", exc=True),
        lambda: _record({"event": "dict message", "n": 1}),
        lambda: _record(
            "odd values",
            extra={
                "at": datetime(2026, 1, 2, tzinfo=UTC),
                "colour": Colour.RED,
                "raw": b"\xff",
                "_hidden": 1,
            },
        ),
        lambda: _record("renamed field as extra", extra={"component": "other", "ts_extra": 2}),
    ],
)
def test_lines_are_the_stock_formatters_byte_for_byte(record: object) -> None:
    made = record()  # type: ignore[operator]
    fast, stock = json_formatter("consumer"), _stock("consumer")
    assert fast.format(made) == stock.format(made)
    assert fast.format(made) == stock.format(made)  # the cached second gives the same text


def test_the_time_is_formatted_per_line() -> None:
    fast, stock = json_formatter("consumer"), _stock("consumer")
    for created in (1_800_000_000.25, 1_800_000_000.75, 1_800_000_001.5, 1_700_000_000.0):
        made = _record("tick")
        made.created, made.msecs = created, (created - int(created)) * 1000
        assert fast.format(made) == stock.format(made)


def test_customer_addresses_are_masked() -> None:
    assert mask_email("juan.perez@gmail.com") == "j***@gmail.com"
    assert mask_email("nobody") == "***"
