"""`python -m client` / `pedidos-client`: parse the command line, wire the parts, exit code."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Callable, Sequence

import grpc
from rich.console import Console

from client.batch_sender import MAX_BATCH_SIZE
from client.orders import DEFAULT_CUSTOMER_EMAIL, InvalidEmail, check_email, random_requests
from client.progress import progress_for
from client.prompts import ask_batch, ask_follow, stream_io
from client.report import render_summary, summary_as_json
from client.sender import DEFAULT_RETRIES, ProducerUnreachable, send_to_producer
from client.tracking import (
    WatchFailure,
    connected,
    explain,
    follow_order,
    follow_orders,
    get_order,
    problem,
)
from client.views import WATCH_COMMAND, FollowView, WatchLines, render_order, render_order_ids
from pedidos.domain.order import InvalidOrder, validate_order_id
from pedidos.runtime.config import ConfigError, Settings, load_settings
from pedidos.v1 import orders_pb2, orders_pb2_grpc

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 1000
DEFAULT_FOLLOW_CONCURRENCY = 200
FOLLOW_REFRESH_S = 0.25

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
    parser.add_argument(
        "--batch",
        type=_batch_size,
        metavar="N",
        help=f"enviar en lotes de N pedidos por llamada (CreateOrderBatch, 1-{MAX_BATCH_SIZE}); "
        "sin él, un pedido por llamada",
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
    parser = argparse.ArgumentParser(
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


def _address_and_deadline(args: argparse.Namespace, settings: Settings) -> tuple[str, float]:
    address = args.address or settings.producer_address
    deadline_s = args.deadline if args.deadline is not None else settings.grpc_deadline_s
    return address, deadline_s


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
    address, deadline_s = _address_and_deadline(args, settings)
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
                    tls_ca=settings.grpc_tls_ca,
                    batch_size=args.batch,
                )
            )
    except ProducerUnreachable as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURES

    if args.json:
        print(summary_as_json(report))
    else:
        render_summary(report, console)
        if report.order_ids:
            render_order_ids(report.order_ids, console)
    outcome = EXIT_OK if report.all_accepted else EXIT_FAILURES
    follow = args.follow
    if not (follow or args.yes or args.json) and report.order_ids:
        # Asked interactively: offer what --follow does.
        follow = ask_follow(ask, say, len(report.order_ids))
    if follow and report.order_ids:
        # With --json, stdout carries only the JSON document.
        view_console = Console(highlight=False, stderr=True) if args.json else console
        followed = _follow(
            address,
            deadline_s,
            report.order_ids,
            args.follow_concurrency,
            view_console,
            settings.grpc_tls_ca,
        )
        outcome = max(outcome, followed)
    return outcome


def _follow(
    address: str,
    deadline_s: float,
    order_ids: list[str],
    concurrency: int,
    console: Console,
    tls_ca: str | None = None,
) -> int:
    view = FollowView(console, order_ids)

    async def run() -> int:
        async with connected(address, deadline_s, tls_ca) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            following = asyncio.create_task(
                follow_orders(stub, order_ids, concurrency, on_change=view)
            )
            while not following.done():
                view.refresh()
                await asyncio.wait({following}, timeout=FOLLOW_REFRESH_S)
            failures = following.result()
        for failure in failures:
            console.print(
                f"No se pudo seguir el pedido {failure.order_id} "
                f"({failure.code.name}: {failure.message})",
                markup=False,
            )
        return EXIT_FAILURES if failures else EXIT_OK

    try:
        with view:
            code = asyncio.run(run())
    except ProducerUnreachable as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURES
    except KeyboardInterrupt:
        # The live view is closed by now; the orders go on without us.
        example = WATCH_COMMAND.format(order_id=order_ids[0])
        console.print(
            f"\nDejaste de seguir los pedidos; siguen avanzando. Para retomarlo: {example}",
            markup=False,
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    if code == EXIT_OK:
        console.print(
            "El pedido llegó a «Finalizado»."
            if len(order_ids) == 1
            else f"Los {len(order_ids)} pedidos llegaron a «Finalizado»."
        )
    return code


def status_command(args: argparse.Namespace, settings: Settings) -> int:
    address, deadline_s = _address_and_deadline(args, settings)

    async def fetch() -> orders_pb2.Order:
        async with connected(address, deadline_s, settings.grpc_tls_ca) as channel:
            return await get_order(
                orders_pb2_grpc.OrderServiceStub(channel), args.order_id, deadline_s
            )

    try:
        order = asyncio.run(fetch())
    except ProducerUnreachable as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURES
    except grpc.aio.AioRpcError as exc:
        print(problem(exc, args.order_id), file=sys.stderr)
        return EXIT_FAILURES
    render_order(order, Console(highlight=False))
    return EXIT_OK


def watch_command(args: argparse.Namespace, settings: Settings) -> int:
    """Each change until Finalizado; a watch that breaks (the producer restarting) is reopened."""
    address, deadline_s = _address_and_deadline(args, settings)
    console = Console(highlight=False)
    lines = WatchLines(console, Console(highlight=False, stderr=True))

    async def run() -> WatchFailure | None:
        async with connected(address, deadline_s, settings.grpc_tls_ca) as channel:
            console.print(
                f"Siguiendo el pedido {args.order_id} (Ctrl-C para salir)",
                markup=False,
                soft_wrap=True,
            )
            return await follow_order(
                orders_pb2_grpc.OrderServiceStub(channel),
                args.order_id,
                lines.change,
                missing_is_final=True,
                on_retry=lines.retry,
            )

    try:
        failure = asyncio.run(run())
    except ProducerUnreachable as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILURES
    except KeyboardInterrupt:
        print(f"\nDejaste de seguir el pedido {args.order_id}; sigue avanzando.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if failure is not None:
        print(explain(failure.code, failure.message, args.order_id), file=sys.stderr)
        if lines.last is not None:
            print("El seguimiento terminó antes de «Finalizado».", file=sys.stderr)
        return EXIT_FAILURES
    console.print("El pedido llegó a «Finalizado».")
    return EXIT_OK


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
