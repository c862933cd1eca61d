"""Where the embedded stack keeps what it fetches once (the Kafka jars, MailDev): outside the work
tree, shared by every clone and reused offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    explicit = os.environ.get("PEDIDOS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pedidos"


def fill_once(
    target: Path,
    argv: Callable[[Path], list[str]],
    timeout_s: float,
    failed: Callable[[str], Exception],
    finish: Callable[[Path], None] | None = None,
) -> None:
    """Fill `target` by running `argv(staging)` into a private staging folder, then renaming it
    into place: two runs filling the cache at once never mix their files, and a failed or
    interrupted fill leaves no half-filled `target` behind.

    `finish(staging)` completes the folder before the rename (e.g. a manifest). A failure raises
    `failed(last line of the tool's output)`. If another run filled `target` first, its copy
    wins."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.partial-", dir=target.parent))
    try:
        done = subprocess.run(
            argv(staging), capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise failed(tail[0])
        if finish is not None:
            finish(staging)
        staging.rename(target)
    except OSError:
        if not target.exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful rename
