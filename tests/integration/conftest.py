"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from admin.mailsink import build_controller
from devkit.net import free_port
from tests.integration.smtp_sinks import REFUSED, DeferringSink


# Both ways of sending: MAIL, RCPT and DATA together when the server offers PIPELINING (as the
# sink does by default, like real relays), one by one when it does not.
@pytest.fixture(params=[True, False], ids=["pipelining", "one-by-one"])
def deferring_sink(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DeferringSink]:
    """An in-process sink that defers the commands appended to its `deferrals` and refuses
    `REFUSED`."""
    sink = DeferringSink(free_port(), tmp_path / "mail")
    controller = build_controller(
        host="127.0.0.1",
        port=sink.port,
        maildir=sink.maildir,
        reject=REFUSED,
        defer=sink.deferrals,
        pipelining=request.param,
    )
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
