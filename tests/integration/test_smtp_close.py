"""Closing the mailer when the SMTP server stopped answering: QUIT is a courtesy, so a server
that never answers it must not hold a stop (a real aiosmtpd server whose QUIT never returns)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

from devkit.net import free_port
from pedidos.adapters.smtp_mailer import QUIT_TIMEOUT_S, SmtpMailer, SmtpSettings

pytestmark = pytest.mark.integration

CONNECTIONS = 4
TIMEOUT_S = 10.0


class SilentOnQuit:
    """Takes connections and EHLO like any server, and never answers QUIT."""

    async def handle_QUIT(self, server: object, session: object, envelope: object) -> str:
        await asyncio.sleep(3600)
        return "221 Bye"


@pytest.fixture
def silent_server() -> Iterator[int]:
    port = free_port()
    controller = Controller(SilentOnQuit(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop(no_assert=True)


def test_close_does_not_wait_out_the_send_timeout_for_each_quit(silent_server: int) -> None:
    mailer = SmtpMailer(
        SmtpSettings("127.0.0.1", silent_server, timeout_s=TIMEOUT_S, connections=CONNECTIONS)
    )
    for _ in range(CONNECTIONS):
        mailer.warm_up()  # one more idle, connected client each time
    started = time.monotonic()
    mailer.close()
    took = time.monotonic() - started
    # Before: CONNECTIONS × TIMEOUT_S (40 s).
    assert took < CONNECTIONS * QUIT_TIMEOUT_S + 2, took
