"""`python -m consumer`: walk every order on `Pedidos` through its states."""

from __future__ import annotations

import asyncio
import sys

from consumer.app import run_consumer
from pedidos.runtime.config import ConfigError, load_settings
from pedidos.runtime.logs import configure_logging
from pedidos.runtime.supervisor import is_worker, supervise


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"consumer: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging("consumer", settings.log_level)
    if settings.consumer_workers > 1 and not is_worker():
        raise SystemExit(supervise("consumer", settings.consumer_workers))
    asyncio.run(run_consumer(settings))


if __name__ == "__main__":
    main()
