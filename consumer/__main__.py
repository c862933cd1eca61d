"""`python -m consumer`: walk every order on `Pedidos` through its states."""

from __future__ import annotations

from consumer.app import run_consumer
from pedidos.runtime.service_main import run_service


def main() -> None:
    run_service("consumer", lambda settings: settings.consumer_workers, run_consumer)


if __name__ == "__main__":
    main()
