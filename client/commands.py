"""The client's commands: send (the default), status and watch; each wires the parts and returns
the exit code."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys

import grpc
from rich.console import Console

from client.connection import AccessRefused, ChannelSecurity, ProducerUnreachable, connected
from client.follow import WatchFailure, follow_order, follow_orders, get_order
from client.orders import DEFAULT_CUSTOMER_EMAIL, InvalidEmail, check_email, random_requests
from client.progress import progress_for
from client.prompts import ask_batch, ask_follow, stream_io
from client.report import render_summary, summary_as_json
from client.send import send_to_producer
from client.views import (
    WATCH_COMMAND,
    FollowView,
    WatchLines,
    explain,
    problem,
    render_order,
    render_order_ids,
)
from pedidos.runtime.config import Settings
from pedidos.v1 import orders_pb2, orders_pb2_grpc

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
FOLLOW_REFRESH_S = 0.25


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
                    security=ChannelSecurity.from_settings(settings),
                    check_access=True,
                    batch_size=args.batch,
                    stream_window=args.stream,
                )
            )
    except (ProducerUnreachable, AccessRefused) as exc:
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
            ChannelSecurity.from_settings(settings),
        )
        outcome = max(outcome, followed)
    return outcome


def _follow(
    address: str,
    deadline_s: float,
    order_ids: list[str],
    concurrency: int,
    console: Console,
    security: ChannelSecurity | None = None,
) -> int:
    view = FollowView(console, order_ids)

    async def run() -> int:
        async with connected(address, deadline_s, security) as channel:
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
        async with connected(
            address, deadline_s, ChannelSecurity.from_settings(settings)
        ) as channel:
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
        async with connected(
            address, deadline_s, ChannelSecurity.from_settings(settings)
        ) as channel:
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
