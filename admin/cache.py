"""Where the embedded stack keeps what it fetches once (the Kafka jars, MailDev): outside the work
tree, shared by every clone and reused offline."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    explicit = os.environ.get("PEDIDOS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pedidos"
