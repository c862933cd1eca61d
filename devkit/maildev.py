"""MailDev, the demo's web inbox: the npm package `maildev` (pinned), installed by the project
into the cache (no global install) and run with the machine's Node.js as the stack's SMTP server.

Tests and the benchmark keep the aiosmtpd sink (admin/mailsink.py): it counts, rejects with 550,
defers with 4xx and requires STARTTLS + AUTH on demand; MailDev is for people.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from devkit.cache import cache_root, fill_once

# 2.2.1: the last release whose package carries the web UI (3.0.0 ships the API only).
MAILDEV_VERSION = "2.2.1"


class MailDevSetupError(RuntimeError):
    """npm or Node.js is missing, or the install failed: one line that names the fix."""


def install_dir() -> Path:
    return cache_root() / f"maildev-{MAILDEV_VERSION}"


def _entry_point() -> Path:
    return install_dir() / "node_modules" / "maildev" / "bin" / "maildev"


def installed() -> bool:
    return _entry_point().is_file()


def available() -> bool:
    """MailDev can run here: Node.js is present and MailDev is installed or npm can install it."""
    return shutil.which("node") is not None and (installed() or shutil.which("npm") is not None)


def ensure_installed(log: bool = True) -> Path:
    if installed():
        return _entry_point()
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise MailDevSetupError(
            "the web inbox needs Node.js and npm (apt-get install nodejs npm); "
            "without them the demo keeps e-mails in a Maildir"
        )
    target = install_dir()
    if log:
        print(f"installing MailDev {MAILDEV_VERSION} from npm into {target} (once)…")
    fill_once(
        target,
        lambda staging: [
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--omit=dev",
            "--prefix",
            str(staging),
            f"maildev@{MAILDEV_VERSION}",
        ],
        900,
        lambda tail: MailDevSetupError(f"npm could not install maildev@{MAILDEV_VERSION}: {tail}"),
    )
    return _entry_point()


def argv(smtp_port: int, web_port: int, mail_dir: Path) -> list[str]:
    return [
        "node",
        str(ensure_installed()),
        "--smtp",
        str(smtp_port),
        "--ip",
        "127.0.0.1",
        "--web",
        str(web_port),
        "--web-ip",
        "127.0.0.1",
        "--mail-directory",
        str(mail_dir),
    ]


def list_emails(web_url: str, timeout: float = 5) -> list[dict[str, object]]:
    """Every message MailDev holds, from its REST API (`GET /email`)."""
    with urllib.request.urlopen(f"{web_url}/email", timeout=timeout) as response:  # noqa: S310 - loopback
        result = json.load(response)
    return list(result) if isinstance(result, list) else []
