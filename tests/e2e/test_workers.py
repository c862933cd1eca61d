"""PRODUCER_WORKERS / CONSUMER_WORKERS: several processes per service under one supervisor."""

from __future__ import annotations

import json
import signal

import psutil
import pytest

from devkit.credentials import producer_channel
from devkit.inbox import STATE_SLUGS, Inbox
from devkit.net import free_ports, http_get
from devkit.orders import order_request
from devkit.processes import ServiceProcess, Services
from devkit.stack import EmbeddedStack
from devkit.topics import publish_order_records
from devkit.waiting import wait_for
from pedidos.v1 import orders_pb2_grpc
from tests.e2e.test_metrics import scrape, value
from tests.e2e.test_pipeline import (
    assert_documents,
    wait_all_consumed,
    wait_all_emails,
    wait_partitions_shared,
)

pytestmark = pytest.mark.e2e
# Separate client channels so that the kernel can spread their connections over the workers.
CHANNELS = 16


def log_pids(process: ServiceProcess, message: str) -> set[int]:
    pids = set()
    for line in process.log().splitlines():
        if line.startswith("{") and f'"message":"{message}"' in line:
            pids.add(json.loads(line)["pid"])
    return pids


def workers_of(process: ServiceProcess, count: int = 2) -> list[psutil.Process]:
    assert process.process is not None
    supervisor = psutil.Process(process.process.pid)
    wait_for(lambda: len(supervisor.children()) == count, 30, f"{count} {process.module} workers")
    return supervisor.children()


def test_two_workers_per_service_share_the_port_and_the_partitions(
    services: Services, stack: EmbeddedStack
) -> None:
    # Worker N serves its metrics on METRICS_PORT + N.
    producer_metrics, consumer_metrics = free_ports(2), free_ports(2)
    producer = services.producer(PRODUCER_WORKERS=2, METRICS_PORT=producer_metrics)
    consumer = services.consumer(
        wait_assigned=False, CONSUMER_WORKERS=2, METRICS_PORT=consumer_metrics
    )
    assert len(workers_of(producer)) == 2
    assert len(workers_of(consumer)) == 2
    wait_partitions_shared(services.env, consumer)  # both workers hold a share

    order_ids = []
    for index in range(CHANNELS * 3):
        channel = producer_channel(
            services.env["PRODUCER_ADDRESS"], options=[("grpc.use_local_subchannel_pool", 1)]
        )
        with channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            for _ in range(2):
                order_ids.append(stub.CreateOrder(order_request(), timeout=10).order_id)
        if index == CHANNELS:
            # Both producer workers took connections (all 17 on one: p = 2 / 2**17).
            assert len(log_pids(producer, "order accepted")) == 2

    inbox = Inbox(stack.maildir)
    wait_all_emails(inbox, order_ids, timeout=120)
    wait_all_consumed(services.env)
    states = inbox.states_by_order(order_ids)
    assert all(states[o] == STATE_SLUGS for o in order_ids)
    assert len(log_pids(consumer, "order state reached")) == 2
    assert_documents(services.env, order_ids)

    # Each worker counts its own share; summed, every order and e-mail appears once.
    producers = [scrape(producer_metrics + n) for n in range(2)]
    consumers = [scrape(consumer_metrics + n) for n in range(2)]
    accepted = [value(s, "pedidos_orders_accepted_total") for s in producers]
    assert sum(accepted) == len(order_ids)
    assert all(accepted)
    sent = [value(s, "pedidos_emails_total", result="sent") for s in consumers]
    assert sum(sent) == len(order_ids) * 5
    assert all(sent)
    lag_series = [
        {labels for (name, labels), _ in s.items() if name == "kafka_consumer_group_lag"}
        for s in consumers
    ]
    assert lag_series[0]
    assert lag_series[1]
    assert not lag_series[0] & lag_series[1]
    for port in (*range(producer_metrics, producer_metrics + 2), consumer_metrics):
        assert http_get(port, "/readyz")[0] == 200

    # SIGTERM to the supervisor stops every worker gracefully.
    children = workers_of(producer) + workers_of(consumer)
    assert producer.stop() == 0
    assert consumer.stop() == 0
    assert not any(child.is_running() and child.status() != "zombie" for child in children)


def test_a_dying_worker_takes_its_supervisor_down_with_it(services: Services) -> None:
    consumer = services.consumer(wait_assigned=False, CONSUMER_WORKERS=2)
    first, second = workers_of(consumer)
    first.send_signal(signal.SIGKILL)
    assert consumer.process is not None
    code = consumer.process.wait(timeout=40)
    # The orchestrator sees a failure and restarts the unit rather than running short.
    assert code != 0
    assert '"message":"a worker exited; stopping the others"' in consumer.log()
    wait_for(lambda: not second.is_running() or second.status() == "zombie", 10, "the other")


def test_a_worker_whose_orders_were_paused_at_the_first_rebalance_takes_them_up_again(
    services: Services,
) -> None:
    """A backlog waits on Kafka; the first worker up takes every partition, pauses `Pedidos`
    at its open-orders bound, and gives half away when the second joins. The partitions it
    keeps must be fetched again: librdkafka keeps a partition's pause across a revoke, and a
    worker once sat idle for good with its half of the backlog on them (the bench, 2 workers)."""
    env = services.env
    publish_order_records(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 1_500)
    services.consumer(
        wait_assigned=False,
        CONSUMER_WORKERS=2,
        CONSUMER_MAX_OPEN_ORDERS=100,
        STAGE_DELAY_MIN_S=0,
        STAGE_DELAY_MAX_S=0,
    )
    wait_all_consumed(env, timeout=60)
