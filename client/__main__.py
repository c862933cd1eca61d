"""`python -m client` / `pedidos-client`: the command line is in client.cli."""

from __future__ import annotations

import sys

from client.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
