"""The command line of `python -m client` / `pedidos-client`: flags, subcommands, exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from client.batch import MAX_BATCH_SIZE
from client.commands import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    send_command,
    status_command,
    watch_command,
)
from client.connection import DEFAULT_RETRIES
from client.orders import DEFAULT_CUSTOMER_EMAIL
from client.spanish_argparse import SpanishArgumentParser
from client.stream import MAX_WINDOW
from pedidos.domain.order import InvalidOrder, validate_order_id
from pedidos.runtime.config import ConfigError, Settings, load_settings
from pedidos.runtime.grpc_aio import keep_grpc_aio_runtime
from pedidos.runtime.tracing import configure as configure_tracing

DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 1000
DEFAULT_FOLLOW_CONCURRENCY = 200

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


def _order_id(text: str) -> str:
    try:
        return validate_order_id(text.strip())
    except InvalidOrder:
        raise argparse.ArgumentTypeError(
            f"«{text}» no es un id de pedido válido (se espera un UUID)"
        ) from None


def _positive_int_up_to(maximum: int, text: str) -> int:
    value = _positive_int(text)
    if value > maximum:
        raise argparse.ArgumentTypeError(f"como máximo {maximum}")
    return value


def _concurrency(text: str) -> int:
    return _positive_int_up_to(MAX_CONCURRENCY, text)


def _batch_size(text: str) -> int:
    return _positive_int_up_to(MAX_BATCH_SIZE, text)


def _stream_window(text: str) -> int:
    return _positive_int_up_to(MAX_WINDOW, text)


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
        help="llamadas simultáneas como máximo; con --batch, lotes simultáneos "
        f"(predeterminado: {DEFAULT_CONCURRENCY})",
    )
    # One RPC per send: CreateOrder by default, CreateOrderBatch or the CreateOrders stream.
    rpc = parser.add_mutually_exclusive_group()
    rpc.add_argument(
        "--batch",
        type=_batch_size,
        metavar="N",
        help=f"enviar en lotes de N pedidos por llamada (CreateOrderBatch, 1-{MAX_BATCH_SIZE}); "
        "sin él, un pedido por llamada",
    )
    rpc.add_argument(
        "--stream",
        type=_stream_window,
        metavar="N",
        help="enviar todos por un solo flujo (CreateOrders) con hasta N pedidos esperando "
        f"respuesta (1-{MAX_WINDOW}); sin reintentos: los no confirmados cuentan como fallidos",
    )
    parser.add_argument("--seed", type=int, help="semilla para generar siempre los mismos pedidos")
    _add_connection_arguments(parser)
    parser.add_argument(
        "--retries",
        type=_non_negative_int,
        default=DEFAULT_RETRIES,
        help=f"reintentos ante UNAVAILABLE/DEADLINE_EXCEEDED (predeterminado: {DEFAULT_RETRIES})",
    )
    parser.add_argument(
        "--json", action="store_true", help="resumen e ids aceptados en JSON por stdout"
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="tras enviar, mostrar en vivo cómo avanzan los pedidos hasta «Finalizado»",
    )
    parser.add_argument(
        "--follow-concurrency",
        type=_concurrency,
        default=DEFAULT_FOLLOW_CONCURRENCY,
        help="pedidos seguidos a la vez con --follow "
        f"(predeterminado: {DEFAULT_FOLLOW_CONCURRENCY})",
    )


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", help="HOST:PUERTO del productor (predeterminado: PRODUCER_ADDRESS)"
    )
    parser.add_argument(
        "--deadline",
        type=_positive_seconds,
        help="plazo de cada llamada en segundos (GRPC_DEADLINE_S)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = SpanishArgumentParser(
        prog="pedidos-client", description="Envía pedidos aleatorios del catálogo al productor."
    )
    # Sending a batch is the default command, so `--count 5 --email a@b.cl --yes` keeps working
    # beside `status ORDER_ID` and `watch ORDER_ID`.
    _add_send_arguments(parser)
    parser.set_defaults(handler=send_command)
    commands = parser.add_subparsers(dest="command", title="comandos", metavar="COMANDO")
    status = commands.add_parser(
        "status", help="muestra el estado, sus fechas y el detalle de un pedido"
    )
    status.add_argument("order_id", type=_order_id, help="id del pedido (UUID)")
    _add_connection_arguments(status)
    status.set_defaults(handler=status_command)
    watch = commands.add_parser(
        "watch", help="muestra cada cambio de estado de un pedido hasta «Finalizado»"
    )
    watch.add_argument("order_id", type=_order_id, help="id del pedido (UUID)")
    _add_connection_arguments(watch)
    watch.set_defaults(handler=watch_command)
    return parser


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
    configure_tracing("client")
    keep_grpc_aio_runtime()  # one asyncio.run per command: no gRPC restart between them
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except KeyboardInterrupt:
        print("\nInterrumpido.", file=sys.stderr)
        return EXIT_INTERRUPTED
