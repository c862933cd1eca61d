"""Headless Chromium as a mail client stand-in: a page's screenshot and its DOM."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# No sandbox: it needs user namespaces, which containers and CI runners often lack.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
WIDTH = 680
TIMEOUT_S = 120.0


class ChromiumMissing(RuntimeError):
    pass


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(page: Path, *arguments: str) -> str:
    chromium = find_chromium()
    if chromium is None:
        raise ChromiumMissing("chromium is not installed (Debian: apt-get install chromium)")
    # A fresh profile per run: a shared one is locked by any other running instance.
    with tempfile.TemporaryDirectory(prefix="pedidos-chromium-") as profile:
        done = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", *arguments, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def screenshot(page: Path, png: Path, height: int, width: int = WIDTH) -> None:
    _run(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    if not png.exists():
        raise RuntimeError(f"chromium wrote no screenshot to {png}")


def dump_dom(page: Path) -> str:
    """The DOM after Chromium parsed and laid out the page, serialised as HTML."""
    return _run(page, "--dump-dom")
