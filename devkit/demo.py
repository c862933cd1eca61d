"""`make demo`: the whole pipeline on the embedded stack, with a live view of the orders."""

from __future__ import annotations

import contextlib
import random
import shutil
import sys
import time
from pathlib import Path

from elasticsearch import Elasticsearch
from rich.console import Console
from rich.live import Live
from rich.table import Table

from client.orders import random_requests
from devkit import maildev
from devkit.credentials import credentials_env, producer_channel
from devkit.inbox import Inbox
from devkit.metrics import Samples, scrape, value
from devkit.net import free_port
from devkit.otlp_receiver import OtlpReceiver, ReceivedSpan, timeline
from devkit.processes import Services
from devkit.scenario import prepare
from devkit.stack import EmbeddedStack, StackPorts, StackSetupError
from pedidos.domain.states import ALL_STATES
from pedidos.runtime.config import Settings
from pedidos.v1 import orders_pb2_grpc

console = Console()


def _send(address: str, count: int, email: str) -> list[tuple[str, str]]:
    sent = []
    with producer_channel(address) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        for request in random_requests(count, email, random.Random()):
            reply = stub.CreateOrder(request, timeout=10)
            sent.append((reply.order_id, request.order.product_name))
    return sent


def _table(orders: list[tuple[str, str]], states: dict[str, str], mails: dict[str, int]) -> Table:
    table = Table(title="Pedidos en curso")
    table.add_column("pedido")
    table.add_column("producto")
    table.add_column("estado")
    table.add_column("avance")
    table.add_column("correos", justify="right")
    names = [s.value for s in ALL_STATES]
    for order_id, product in orders:
        current = states.get(order_id)
        reached = 0 if current is None else names.index(current) + 1
        bar = "[green]" + "■" * reached + "[/]" + "□" * (len(names) - reached)
        label = current or "enviado a Kafka"
        table.add_row(order_id[:8], product, label, bar, str(mails.get(order_id, 0)))
    return table


def _maildev_counts(web_url: str, order_ids: set[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        emails = maildev.list_emails(web_url)
    except OSError:
        return counts  # the table shows the last counts until the next poll
    for email in emails:
        headers = email.get("headers")
        order_id = headers.get("x-pedidos-order-id") if isinstance(headers, dict) else None
        if order_id in order_ids:
            counts[order_id] = counts.get(order_id, 0) + 1
    return counts


def _mail_counts(inbox: Inbox, order_ids: set[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for order_id, _ in inbox.arrivals(order_ids):
        counts[order_id] = counts.get(order_id, 0) + 1
    return counts


def choose_inbox(requested: str | None) -> str:
    """MailDev's web inbox when Node.js and npm can run it, else the Maildir sink."""
    if requested in ("maildev", "maildir"):
        return requested
    return "maildev" if maildev.available() else "maildir"


def _open_stack(root: Path, inbox: str | None) -> EmbeddedStack:
    """The demo's stack on free ports, starting empty; exit 2 naming the fix if it cannot run."""
    shutil.rmtree(root, ignore_errors=True)  # the previous demo's output stays until now
    chosen = choose_inbox(inbox)
    try:
        return EmbeddedStack(
            root,
            StackPorts(free_port(), free_port(), free_port()),
            inbox="maildev" if chosen == "maildev" else "sink",
        )
    except StackSetupError as exc:
        console.print(f"[red]demo: {exc}[/]")
        raise SystemExit(2) from None


def _watch(
    sent: list[tuple[str, str]], stack: EmbeddedStack, es: Elasticsearch, settings: Settings
) -> tuple[dict[str, str], dict[str, int]]:
    """The live table until every order is Finalizado with its five e-mails (or 120 s pass);
    the last states and e-mail counts."""
    ids = {order_id for order_id, _ in sent}
    index = settings.elasticsearch_orders_index
    states: dict[str, str] = {}
    mails: dict[str, int] = {}
    with Live(_table(sent, states, {}), console=console, refresh_per_second=4) as live:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            es.indices.refresh(index=index)
            query = {"terms": {"order_id": sorted(ids)}}
            hits = es.search(index=index, query=query, size=len(ids))["hits"]["hits"]
            states = {h["_source"]["order_id"]: h["_source"]["state"] for h in hits}
            if stack.web_inbox_url:
                mails = _maildev_counts(stack.web_inbox_url, ids)
            else:
                mails = _mail_counts(Inbox(stack.maildir), ids)
            live.update(_table(sent, states, mails))
            finished = len(states) == len(ids) and set(states.values()) == {"Finalizado"}
            if finished and sum(mails.values()) >= 5 * len(ids):
                break
            time.sleep(0.5)
    return states, mails


# The consumer commits every 0.5 s: a few intervals for the last state records to be committed.
LAG_SETTLE_S = 3.0


def _committed_figures(ports: dict[str, int], settle_s: float = LAG_SETTLE_S) -> Samples:
    """Both services' samples once the consumer has committed every record it read (its lag 0),
    or as they are after `settle_s`: the orders are done by now, their last records may not be
    committed yet, and a lag left over from that would read as work still waiting."""
    deadline = time.monotonic() + settle_s
    while True:
        consumer = scrape(ports["consumer"])
        if value(consumer, "kafka_consumer_group_lag") == 0 or time.monotonic() >= deadline:
            return {**scrape(ports["producer"]), **consumer}
        time.sleep(0.1)


def _print_metrics(ports: dict[str, int]) -> None:
    """The metrics URLs, and a few figures read back from them (what Prometheus would see)."""
    urls = {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}
    console.print(
        f"Metrics:        {urls['producer']} (producer), {urls['consumer']} (consumer)",
        soft_wrap=True,
    )
    figures = _committed_figures(ports)
    shown = {
        "accepted": value(figures, "pedidos_orders_accepted_total"),
        "e-mails sent": value(figures, "pedidos_emails_total", result="sent"),
        "lag": value(figures, "kafka_consumer_group_lag"),
    }
    parts = [f"{name} {figure:g}" for name, figure in shown.items()]
    count = value(figures, "pedidos_order_duration_seconds_count")
    if count:
        mean_s = value(figures, "pedidos_order_duration_seconds_sum") / count
        parts.append(f"mean accepted→Finalizado {mean_s:.2f} s")
    console.print("                " + ", ".join(parts), soft_wrap=True)


def _print_trace(receiver: OtlpReceiver, order_id: str) -> None:
    """The first order's trace, from the spans the services exported: id and timings."""

    def walked() -> list[ReceivedSpan] | None:
        found = [
            s
            for s in receiver.spans()
            if s.name.startswith("process ") and s.attributes.get("pedidos.order.id") == order_id
        ]
        return found if len(found) == len(ALL_STATES) else None

    deadline = time.monotonic() + 5  # the exporters send every 100 ms
    while (processes := walked()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if processes is None:
        console.print(f"[yellow]the trace of {order_id} did not arrive whole[/]")
        return
    time.sleep(0.3)  # the last spans of its last step
    trace_id = processes[0].trace_id
    console.print(f"\n[bold]Traza del pedido {order_id}: {trace_id}[/]", soft_wrap=True)
    console.print("     start     duration  span", markup=False)
    for line in timeline(receiver.traces()[trace_id]):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _print_where_to_look(stack: EmbeddedStack, settings: Settings, logs: Path) -> None:
    """Commands and addresses each on one line however narrow the terminal (soft wrap): a line
    break inside a `curl` command would run it cut short when pasted."""
    if stack.web_inbox_url:
        console.print(
            f"[bold]E-mails: open {stack.web_inbox_url}/[/] (MailDev web inbox)", soft_wrap=True
        )
    else:
        console.print(
            f"E-mails (one file each): {stack.maildir / 'new'} — open one in a mail client, "
            "or install Node.js and npm for a web inbox",
            soft_wrap=True,
        )
    console.print(
        f"Current state:  curl -s '{settings.elasticsearch_url}/"
        f"{settings.elasticsearch_orders_index}/_search?pretty'",
        soft_wrap=True,
    )
    console.print(
        f"State events:   curl -s '{settings.elasticsearch_url}/"
        f"{settings.elasticsearch_events_index}/_search?q=state:Enviado&pretty'",
        soft_wrap=True,
    )
    console.print(f"Logs: {logs}", soft_wrap=True)


def run_demo(orders: int = 5, keep_running: bool | None = None, inbox: str | None = None) -> None:
    root = Path(".stack/demo")
    stack = _open_stack(root, inbox)
    # The services export their traces here, to print one order's trace at the end.
    receiver = OtlpReceiver()
    env = {
        **stack.env(),
        **receiver.env(),
        "GRPC_LISTEN": f"127.0.0.1:{free_port()}",
        "STAGE_DELAY_MIN_S": "0.5",
        "STAGE_DELAY_MAX_S": "1.5",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        **credentials_env(),
    }
    env["PRODUCER_ADDRESS"] = env["GRPC_LISTEN"]
    metrics = {"producer": free_port(), "consumer": free_port()}
    logs = root / "logs"
    services = Services(env, logs, tied=True)
    if stack.broker.note:
        console.print(f"[yellow]{stack.broker.note}[/]")
    broker = "Apache Kafka" if stack.broker.name == "apache" else "Tansu"
    mail = "MailDev web inbox" if stack.web_inbox_url else "Maildir mail sink"
    console.print(f"[bold]1/4[/] starting the embedded stack ({broker}, noida-db, {mail})…")
    receiver.__enter__()  # left in `finally`, with the services
    try:
        stack.up()
        console.print("[bold]2/4[/] creating topics and index templates…")
        settings = prepare(env)
        es = Elasticsearch(settings.elasticsearch_url)
        console.print("[bold]3/4[/] starting producer and consumer…")
        services.consumer(
            wait_assigned=False, log_name="consumer", METRICS_PORT=metrics["consumer"]
        )
        services.producer(log_name="producer", METRICS_PORT=metrics["producer"])
        console.print(f"[bold]4/4[/] sending {orders} random orders through gRPC…")
        sent = _send(env["PRODUCER_ADDRESS"], orders, "cliente@example.cl")
        states, mails = _watch(sent, stack, es, settings)
        done = sum(1 for s in states.values() if s == "Finalizado")
        console.print(f"\n[bold green]{done}/{len(sent)} pedidos finalizados[/]")
        console.print(f"{sum(mails.values())} e-mails delivered ({5 * len(sent)} expected)")
        if sent:
            # The last order sent: the first one's trace also holds the warm-up (the producer's
            # first record, the first SMTP connection), hundreds of ms that later orders do not pay.
            _print_trace(receiver, sent[-1][0])
        _print_where_to_look(stack, settings, logs)
        _print_metrics(metrics)
        if keep_running is None:
            keep_running = sys.stdin.isatty()
        if keep_running:
            console.print(f"Producer at {env['PRODUCER_ADDRESS']}. Everything runs until Ctrl-C.")
            console.print(
                "Send more from another terminal: "
                f"PRODUCER_ADDRESS={env['PRODUCER_ADDRESS']} "
                f"PRODUCER_API_KEY={env['PRODUCER_API_KEY']} .venv/bin/python -m client",
                markup=False,
                soft_wrap=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1)
        if done != len(sent):
            raise SystemExit(1)
    finally:
        for process in services.started:
            process.stop(20, kill_late=True)
        stack.down()
        receiver.__exit__()
        console.print("stopped producer, consumer and the embedded stack")
