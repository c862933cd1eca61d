"""`python -m producer`: run the gRPC order intake server."""

from __future__ import annotations

import asyncio
import sys

from pedidos.runtime.config import ConfigError, load_settings
from pedidos.runtime.logs import configure_logging
from pedidos.runtime.supervisor import is_worker, supervise
from producer.server import serve


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"producer: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging("producer", settings.log_level)
    if settings.producer_workers > 1 and not is_worker():
        raise SystemExit(supervise("producer", settings.producer_workers))
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
