"""The client's status/watch/--follow over real gRPC against a fake OrderService: retries of a
broken watch, bounded concurrency, and what is shown (in Spanish)."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from rich.console import Console

from client.cli import build_parser, main
from client.commands import send_command, status_command, watch_command
from client.follow import Change, WatchFailure, follow_order, follow_orders
from client.views import FollowView, WatchLines, render_order, render_order_ids
from devkit.net import free_port
from devkit.orders import make_details
from pedidos.domain.order import Order
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from pedidos.wire.proto_mapping import order_to_proto
from tests.order_service import start_order_service
from tests.unit.fake_order_service import (
    FINE,
    FLAKY,
    GAP,
    GONE,
    LATE,
    NEVER,
    START,
    FakeOrderService,
    ProducerThread,
    stamp,
)


def follow(ids: list[str], concurrency: int) -> tuple[list[Change], list, FakeOrderService]:
    servicer = FakeOrderService()

    async def run() -> tuple[list[Change], list]:
        server, address = await start_order_service(servicer)
        seen: list[Change] = []
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = orders_pb2_grpc.OrderServiceStub(channel)
                failures = await follow_orders(stub, ids, concurrency, seen.append, pause_s=0.01)
        finally:
            await server.stop(None)
        return seen, failures

    seen, failures = asyncio.run(run())
    return seen, failures, servicer


def test_following_survives_broken_and_early_watches_and_reports_each_state_once() -> None:
    ids = [f"{behaviour}-{uuid.uuid4()}" for behaviour in (FINE, FLAKY, LATE)]
    seen, failures, servicer = follow(ids, concurrency=3)
    assert failures == []
    for order_id in ids:
        assert [c.state for c in seen if c.order_id == order_id] == list(ALL_STATES)
        assert [c.reached_at for c in seen if c.order_id == order_id] == [
            stamp(i) for i in range(5)
        ]
    assert servicer.watch_calls[ids[1]] == 2
    assert servicer.watch_calls[ids[2]] == 3


def test_following_gives_up_on_what_cannot_be_watched() -> None:
    gone, never = f"{GONE}-{uuid.uuid4()}", f"{NEVER}-{uuid.uuid4()}"
    servicer = FakeOrderService()

    async def run() -> list:
        server, address = await start_order_service(servicer)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = orders_pb2_grpc.OrderServiceStub(channel)
                return [
                    await follow_order(stub, gone, print, pause_s=0.01),
                    await follow_order(stub, never, print, pause_s=0.01, max_failures=3),
                ]
        finally:
            await server.stop(None)

    invalid, missing = asyncio.run(run())
    assert invalid.code == grpc.StatusCode.INVALID_ARGUMENT
    assert servicer.watch_calls[gone] == 1, "a definitive error is not retried"
    assert missing.code == grpc.StatusCode.NOT_FOUND
    assert servicer.watch_calls[never] == 3


def test_at_most_concurrency_watches_are_open() -> None:
    ids = [f"{FINE}-{uuid.uuid4()}" for _ in range(12)]
    seen, failures, servicer = follow(ids, concurrency=4)
    assert failures == []
    assert servicer.max_open == 4
    assert Counter(c.state for c in seen) == dict.fromkeys(ALL_STATES, 12)


def order_message(state: OrderState | None) -> orders_pb2.Order:
    order = Order(order_id=str(uuid.uuid4()), details=make_details(), accepted_at=START)
    if state is not None:
        for step in ALL_STATES[: state.position + 1]:
            order.enter(step, stamp(step.position))
    return order_to_proto(order)


def printed(render: object, *args: object, terminal: bool = False) -> str:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=terminal, color_system=None)
    render(*args, console)  # type: ignore[operator]
    return out.getvalue()


def test_status_shows_states_with_their_times_and_the_details_in_spanish() -> None:
    message = order_message(OrderState.ENVIADO)
    out = printed(render_order, message)
    assert f"Pedido {message.order_id}" in out
    assert "Estado actual: Enviado" in out
    local = [stamp(i).astimezone().strftime("%d-%m-%Y %H:%M:%S") for i in range(3)]
    for line_start, at in zip(("Procesando", "Preparación", "Enviado"), local, strict=True):
        assert any(line_start in line and at in line for line in out.splitlines())
    assert sum("pendiente" in line for line in out.splitlines()) == 2
    for text in ("Silla Gamer", "$129.990", "Mercado Pago (Visa)", "Banco de Chile", "Maipú"):
        assert text in out


def test_status_prints_the_trace_id_when_the_order_has_one() -> None:
    message = order_message(OrderState.ENVIADO)
    assert "Traza" not in printed(render_order, message)
    message.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert "Traza: 4bf92f3577b34da6a3ce929d0e0e4736" in printed(render_order, message)


def test_status_of_an_order_the_consumer_has_not_started() -> None:
    out = printed(render_order, order_message(None))
    assert "Estado actual: En espera" in out
    assert sum("pendiente" in line for line in out.splitlines()) == 5


def test_the_follow_view_on_a_terminal_and_in_a_pipe() -> None:
    ids = [str(uuid.uuid4()) for _ in range(30)]
    out = io.StringIO()
    view = FollowView(Console(file=out, width=160, color_system=None), ids)
    for order_id in ids[:10]:
        view(Change(order_id, OrderState.FINALIZADO, START))
    view(Change(ids[10], OrderState.ENVIADO, START))
    lines = out.getvalue().splitlines()
    assert (
        lines[0] == f"Pedido 1 ({ids[0]}): Finalizado  {START.astimezone():%d-%m-%Y %H:%M:%S}.000"
    )
    assert view.finished == 10

    table = io.StringIO()
    Console(file=table, width=160, color_system=None).print(view.render())
    shown = table.getvalue()
    # Orders still walking come first (20), then finished ones; 25 rows at most.
    assert all(order_id in shown for order_id in ids[10:])
    assert all(order_id in shown for order_id in ids[:5])
    assert not any(order_id in shown for order_id in ids[5:10])
    assert "… y 5 pedidos más" in shown
    assert "En espera: 19  Procesando: 0  Preparación: 0  Enviado: 1" in shown
    assert "Finalizado: 10" in shown


def test_subcommands_and_the_default_send_command() -> None:
    parser = build_parser()
    order_id = str(uuid.uuid4())
    assert parser.parse_args(["status", order_id]).handler is status_command
    assert parser.parse_args(["watch", order_id.upper()]).order_id == order_id
    sent = parser.parse_args(["--count", "5", "--email", "a@b.cl", "--yes", "--follow"])
    assert sent.handler is send_command
    assert (sent.count, sent.yes, sent.follow) == (5, True, True)
    assert parser.parse_args(["watch", order_id]).handler is watch_command
    with pytest.raises(SystemExit):
        parser.parse_args(["status", "pedido-7"])


@pytest.fixture
def producer() -> Iterator[ProducerThread]:
    running = ProducerThread()
    yield running
    running.close()


def test_watch_and_status_commands(
    producer: ProducerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    servicer = FakeOrderService()
    address = producer.serve(servicer)
    order_id = str(uuid.uuid4())
    servicer.orders[order_id] = order_message(OrderState.PREPARACION)

    assert main(["watch", "pedido-7", "--address", address]) == 2  # refused before any call
    assert "no es un id de pedido válido" in capsys.readouterr().err
    assert main(["watch", order_id, "--address", address]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1:] == [
        f"{stamp(i).astimezone():%d-%m-%Y %H:%M:%S}.000  {state.value}"
        for i, state in enumerate(ALL_STATES)
    ] + ["El pedido llegó a «Finalizado»."]

    assert main(["status", order_id, "--address", address]) == 0
    assert "Estado actual: Preparación" in capsys.readouterr().out
    unknown = str(uuid.uuid4())
    assert main(["status", unknown, "--address", address]) == 1
    assert capsys.readouterr().err.strip() == f"No existe el pedido {unknown}."


def test_commands_without_a_producer_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    for command in ("status", "watch"):
        assert main([command, str(uuid.uuid4()), "--address", address, "--deadline", "0.3"]) == 1
        assert "No se pudo conectar con el productor" in capsys.readouterr().err


def test_a_watch_reopened_after_a_break_fills_the_states_passed_meanwhile() -> None:
    order_id = f"{GAP}-{uuid.uuid4()}"
    servicer = FakeOrderService()
    servicer.orders[order_id] = order_message(OrderState.ENTREGADO)
    breaks: list[grpc.StatusCode] = []

    async def run() -> list[Change]:
        server, address = await start_order_service(servicer)
        seen: list[Change] = []
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = orders_pb2_grpc.OrderServiceStub(channel)
                failure = await follow_order(
                    stub,
                    order_id,
                    seen.append,
                    pause_s=0.01,
                    on_retry=lambda failure: breaks.append(failure.code),
                )
        finally:
            await server.stop(None)
        assert failure is None
        return seen

    seen = asyncio.run(run())
    assert [c.state for c in seen] == list(ALL_STATES)
    assert [c.reached_at for c in seen] == [stamp(i) for i in range(5)]
    assert breaks == [grpc.StatusCode.UNAVAILABLE]


def test_an_unknown_order_fails_at_once_when_missing_is_final() -> None:
    never, late = f"{NEVER}-{uuid.uuid4()}", f"{LATE}-{uuid.uuid4()}"
    servicer = FakeOrderService()

    async def run() -> list:
        server, address = await start_order_service(servicer)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = orders_pb2_grpc.OrderServiceStub(channel)
                return [
                    await follow_order(stub, order_id, print, pause_s=0.01, missing_is_final=True)
                    for order_id in (never, late)
                ]
        finally:
            await server.stop(None)

    missing, late_failure = asyncio.run(run())
    assert missing.code == grpc.StatusCode.NOT_FOUND
    assert servicer.watch_calls[never] == 1, "an id nobody knows is not retried"
    assert late_failure.code == grpc.StatusCode.NOT_FOUND
    assert servicer.watch_calls[late] == 1


def test_watch_lines_note_a_break_once_and_the_recovery() -> None:
    out, notes = io.StringIO(), io.StringIO()
    lines = WatchLines(Console(file=out, width=200), Console(file=notes, width=200))
    order_id = str(uuid.uuid4())
    broken = WatchFailure(order_id, grpc.StatusCode.UNAVAILABLE, "shutting down")
    lines.change(Change(order_id, OrderState.PROCESANDO, stamp(0)))
    lines.retry(broken)
    lines.retry(broken)
    lines.change(Change(order_id, OrderState.PREPARACION, stamp(1)))
    assert [line.split("  ")[1] for line in out.getvalue().splitlines()] == [
        "Procesando",
        "Preparación",
    ]
    assert notes.getvalue().splitlines() == [
        "Se perdió el seguimiento (UNAVAILABLE: shutting down); reintentando…",
        "Conexión recuperada.",
    ]
    assert lines.last is OrderState.PREPARACION


def test_order_ids_after_a_send_are_listed_up_to_ten() -> None:
    ids = [str(uuid.uuid4()) for _ in range(12)]
    shown = printed(render_order_ids, ids)
    assert shown.splitlines() == [
        "Pedidos aceptados:",
        *[f"  {n:>2}. {order_id}" for n, order_id in enumerate(ids[:10], 1)],
        "  … y 2 más",
        "Para seguir uno: python -m client watch ID",
    ]
    assert printed(render_order_ids, ids[:1]).splitlines()[:2] == [
        "Pedido aceptado:",
        f"   1. {ids[0]}",
    ]


def test_a_broken_watch_is_reopened_after_a_backoff_pause() -> None:
    order_id = f"{FLAKY}-{uuid.uuid4()}"
    servicer = FakeOrderService()

    async def run() -> tuple[WatchFailure | None, float]:
        server, address = await start_order_service(servicer)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                stub = orders_pb2_grpc.OrderServiceStub(channel)
                started = time.monotonic()
                failure = await follow_order(stub, order_id, lambda _: None, pause_s=0.6)
                return failure, time.monotonic() - started
        finally:
            await server.stop(None)

    failure, elapsed = asyncio.run(run())
    assert failure is None
    assert servicer.watch_calls[order_id] == 2
    # The shared backoff's first pause: 0.5-1.5 times pause_s.
    assert 0.3 <= elapsed < 0.9 + 1.0
