"""The embedded stack's mail sink runs on uvloop unless it serves TLS (aiosmtpd's STARTTLS
needs asyncio's own loop)."""

from __future__ import annotations

from pathlib import Path

import trustme

from admin.mailsink import build_controller
from devkit.net import free_port


def loop_module(pem: Path | None = None) -> str:
    controller = build_controller(
        host="127.0.0.1", port=free_port(), maildir=None, tls_cert=pem, tls_key=pem
    )
    try:
        return type(controller.loop).__module__
    finally:
        controller.loop.close()


def test_a_plain_sink_runs_on_uvloop() -> None:
    assert loop_module() == "uvloop"


def test_a_tls_sink_runs_on_asyncios_loop(tmp_path: Path) -> None:
    pem = tmp_path / "server.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    assert loop_module(pem).startswith("asyncio")
