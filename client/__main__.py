"""`python -m client` / `pedidos-client`: parse the command line, wire the parts, exit code."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Callable, Sequence

from rich.console import Console

from client.orders import DEFAULT_CUSTOMER_EMAIL, InvalidEmail, check_email, random_requests
from client.progress import progress_for
from client.prompts import ask_batch, stream_io
from client.report import render_summary, summary_as_json
from client.sender import DEFAULT_RETRIES, ProducerUnreachable, send_to_producer
from pedidos.config import ConfigError, Settings, load_settings

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 1000

Handler = Callable[[argparse.Namespace, Settings], int]


def _int_at_least(minimum: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"«{text}» no es un número entero") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"debe ser al menos {minimum}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(1, text)


def _concurrency(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"como máximo {MAX_CONCURRENCY}")
    return value


def _non_negative_int(text: str) -> int:
    return _int_at_least(0, text)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"«{text}» no es un número de segundos") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("debe ser un número de segundos mayor que cero")
    return value


def _add_send_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--count", type=_positive_int, help="cuántos pedidos enviar (sin él, pregunta)"
    )
    parser.add_argument(
        "--email", help=f"correo del cliente (predeterminado: {DEFAULT_CUSTOMER_EMAIL})"
    )
    parser.add_argument("--yes", action="store_true", help="no pedir confirmación")
    parser.add_argument(
        "--concurrency",
        type=_concurrency,
        default=DEFAULT_CONCURRENCY,
        help=f"llamadas simultáneas como máximo (predeterminado: {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument("--seed", type=int, help="semilla para generar siempre los mismos pedidos")
    parser.add_argument(
        "--address", help="HOST:PUERTO del productor (predeterminado: PRODUCER_ADDRESS)"
    )
    parser.add_argument(
        "--deadline",
        type=_positive_seconds,
        help="plazo de cada llamada en segundos (GRPC_DEADLINE_S)",
    )
    parser.add_argument(
        "--retries",
        type=_non_negative_int,
        default=DEFAULT_RETRIES,
        help=f"reintentos ante UNAVAILABLE/DEADLINE_EXCEEDED (predeterminado: {DEFAULT_RETRIES})",
    )
    parser.add_argument(
        "--json", action="store_true", help="resumen e ids aceptados en JSON por stdout"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pedidos-client", description="Envía pedidos aleatorios del catálogo al productor."
    )
    # Sending a batch is the default command, so `--count 5 --email a@b.cl --yes` keeps working
    # when `status ORDER_ID` / `watch ORDER_ID` arrive as parser.add_subparsers(dest="command")
    # entries, each with its own set_defaults(handler=...).
    _add_send_arguments(parser)
    parser.set_defaults(handler=send_command)
    return parser


def send_command(args: argparse.Namespace, settings: Settings) -> int:
    email: str | None = None
    if args.email is not None:
        try:
            email = check_email(args.email)
        except InvalidEmail as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
    elif args.count is not None:
        email = DEFAULT_CUSTOMER_EMAIL
    ask, say = stream_io(sys.stderr) if args.json else (input, print)
    batch = ask_batch(
        ask,
        say,
        default_email=DEFAULT_CUSTOMER_EMAIL,
        count=args.count,
        email=email,
        assume_yes=args.yes,
    )
    if batch is None:
        return EXIT_OK

    console = Console(highlight=False)
    requests = random_requests(batch.count, batch.email, random.Random(args.seed))
    address = args.address or settings.producer_address
    deadline_s = args.deadline if args.deadline is not None else settings.grpc_deadline_s
    display = progress_for(console, batch.count, quiet=args.json)
    try:
        with display:
            report = asyncio.run(
                send_to_producer(
                    address,
                    requests,
                    args.concurrency,
                    deadline_s,
                    args.retries,
                    on_outcome=display,
                )
            )
    except ProducerUnreachable as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURES

    if args.json:
        print(summary_as_json(report))
    else:
        render_summary(report, console)
    return EXIT_OK if report.all_accepted else EXIT_FAILURES


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except KeyboardInterrupt:
        print("\nInterrumpido.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
