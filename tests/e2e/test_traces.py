"""Traces on the embedded stack: the client, producer and consumer export to an OTLP receiver
started by the test, which reassembles one trace per order, from the client's CreateOrder call
to all five state spans with their e-mail, index and publish children; the shared bulk requests
in traces of their own (the elasticsearch client's spans inside), linked to each order's spans;
and the trace id in the order's documents and e-mails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import pytest

from devkit.inbox import Inbox
from devkit.indices import search_docs
from devkit.otlp_receiver import OtlpReceiver, ReceivedSpan, timeline
from devkit.processes import Services
from devkit.stack import EmbeddedStack
from devkit.waiting import wait_for
from tests.e2e.test_pipeline import wait_all_consumed, wait_all_emails

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
STATES = ["Procesando", "Preparación", "Enviado", "Entregado", "Finalizado"]
ORDERS = 8
STEP_CHILDREN = {"smtp send", "index event", "index order"}
# Read before the first step only: the later ones are triggered by the consumer's own records,
# read back under the assignment it published them under (one consumer, no rebalance here).
LEDGER = "ledger lookup"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as instance:
        yield instance


def send_with_client(address: str, receiver: OtlpReceiver, count: int) -> list[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "client",
            "--count",
            str(count),
            "--email",
            "t@example.cl",
            "--yes",
            "--json",
        ],
        env={**os.environ, "PRODUCER_ADDRESS": address, **receiver.env()},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    order_ids: list[str] = json.loads(result.stdout)["order_ids"]
    assert len(order_ids) == count
    return order_ids


def process_spans(spans: list[ReceivedSpan], order_id: str) -> list[ReceivedSpan]:
    return [
        s
        for s in spans
        if s.name.startswith("process ") and s.attributes.get("pedidos.order.id") == order_id
    ]


def test_one_trace_per_order_from_the_client_call_to_finalizado(
    services: Services, stack: EmbeddedStack, receiver: OtlpReceiver
) -> None:
    services.producer(**receiver.env())
    services.consumer(True, None, **receiver.env())
    orders_topic, states_topic = services.env["PEDIDOS_TOPIC"], services.env["PEDIDOS_STATES_TOPIC"]
    order_ids = send_with_client(services.env["PRODUCER_ADDRESS"], receiver, ORDERS)
    inbox = Inbox(stack.maildir)
    wait_all_emails(inbox, order_ids)
    wait_all_consumed(services.env)
    wait_for(
        lambda: all(len(process_spans(receiver.spans(), o)) == 5 for o in order_ids),
        30,
        "five process spans per order at the receiver",
        0.2,
    )
    time.sleep(0.5)  # a few export intervals: spans that end later (the bulk's) arrive too
    spans = receiver.spans()
    by_id = {s.span_id: s for s in spans}
    traces = receiver.traces()
    documents = search_docs(
        services.env["ELASTICSEARCH_URL"], services.env["ELASTICSEARCH_EVENTS_INDEX"], order_ids
    )

    for order_id in order_ids:
        processes = process_spans(spans, order_id)
        [trace_id] = {s.trace_id for s in processes}  # one trace for the whole walk
        trace = traces[trace_id]
        assert sorted(s.attributes["pedidos.order.state"] for s in processes) == sorted(STATES)
        # It starts at the client's call, through the producer's server span.
        [client_call] = [s for s in trace if s.kind == "CLIENT" and s.service == "pedidos-client"]
        assert client_call.name == "/pedidos.v1.OrderService/CreateOrder"
        assert client_call.parent_id is None
        [server] = [s for s in trace if s.kind == "SERVER"]
        assert server.parent_id == client_call.span_id
        assert server.service == "pedidos-producer"
        [send] = [s for s in trace if s.name == f"send {orders_topic}"]
        assert send.parent_id == server.span_id
        assert send.kind == "PRODUCER"
        assert send.attributes["messaging.kafka.message.key"] == order_id
        for process in processes:
            trigger = by_id[process.parent_id or ""]
            assert trigger.kind == "PRODUCER"
            assert process.links == [(trace_id, trigger.span_id)]
            assert (
                process.attributes["messaging.kafka.offset"]
                == trigger.attributes["messaging.kafka.offset"]
            )
            assert (
                process.attributes["messaging.consumer.group.name"]
                == services.env["KAFKA_CONSUMER_GROUP"]
            )
            children = [s for s in trace if s.parent_id == process.span_id]
            names = {s.name for s in children}
            assert names >= STEP_CHILDREN | {f"send {states_topic}"}, (order_id, names)
            first = process.attributes["pedidos.order.state"] == STATES[0]
            assert (LEDGER in names) is first, (order_id, process.attributes, names)
            [smtp] = [s for s in children if s.name == "smtp send"]
            assert smtp.kind == "CLIENT"
            assert smtp.attributes["server.port"] == stack.ports.smtp
            # Each document's span is linked to the bulk request that wrote it, whose trace
            # holds the elasticsearch client's own span.
            [index_event] = [s for s in children if s.name == "index event"]
            [(bulk_trace, bulk_id)] = index_event.links
            bulk = by_id[bulk_id]
            assert bulk.name == "index bulk"
            assert (trace_id, index_event.span_id) in bulk.links
            assert any(
                s.parent_id == bulk_id and s.attributes.get("db.system.name") == "elasticsearch"
                for s in traces[bulk_trace]
            )
        # The trace id where people look: the order's documents and its e-mails.
        assert {d["trace_id"] for d in documents if d["order_id"] == order_id} == {trace_id}
        headers = {message_from_bytes(m)["X-Trace-Id"] for m in inbox.messages_for(order_id)}
        assert headers == {trace_id}

    # `client status` prints it (GetOrder returns it), here without tracing of its own.
    status = subprocess.run(
        [sys.executable, "-m", "client", "status", order_ids[0]],
        env={**os.environ, "PRODUCER_ADDRESS": services.env["PRODUCER_ADDRESS"]},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    first_trace = process_spans(spans, order_ids[0])[0].trace_id
    assert f"Traza: {first_trace}" in status.stdout

    print("\n" + "\n".join(timeline(traces[first_trace])))
