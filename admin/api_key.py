"""`python -m admin api-key create`: a new key for the gRPC API, shown once, and the line that
configures it on the producer (GRPC_API_KEYS holds only its salted hash)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pedidos.runtime.api_keys import PERMISSIONS, InvalidApiKeys, create_key


def cmd_create(args: argparse.Namespace) -> None:
    try:
        key, line = create_key(args.name, args.permissions.split(","))
    except InvalidApiKeys as exc:
        print(f"admin: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"PRODUCER_API_KEY={key}")
    print(f"GRPC_API_KEYS={line}")
    print(
        "The key is shown only now: give PRODUCER_API_KEY to the client, add the GRPC_API_KEYS "
        "line to the producer's (several lines: separate them with ';').",
        file=sys.stderr,
    )


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("api-key", help="create an API key for the gRPC API")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="print a new key and its GRPC_API_KEYS line")
    create.add_argument("--name", required=True, help="who uses it, e.g. web-shop")
    create.add_argument(
        "--permissions",
        required=True,
        help=f"comma-separated: {', '.join(sorted(PERMISSIONS))}",
    )
    create.set_defaults(run=cmd_create)
