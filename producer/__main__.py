"""`python -m producer`: run the gRPC order intake server."""

from __future__ import annotations

from pedidos.runtime.service_main import run_service
from producer.server import serve


def main() -> None:
    run_service("producer", lambda settings: settings.producer_workers, serve)


if __name__ == "__main__":
    main()
