"""A consumer asked to stop while its broker has gone silent (up, but answering nothing, as
behind a network partition) stops in time and exits 0. librdkafka's close() waits for such a
broker without end: before the bound on it, the services' 60 s limit ended these stops with
exit code 1. What was not committed is read again by the next owner, as after a crash."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from bench.limits import produce_all
from consumer.loop import BROKER_PATIENCE_S, SOURCE_CLOSE_LIMIT_S
from devkit.orders import order_records
from devkit.processes import Services
from devkit.stack import EmbeddedStack
from pedidos.adapters.kafka.publisher import producer_config
from pedidos.runtime.shutdown import SHUTDOWN_LIMIT_S
from tests.conftest import isolated_env

pytestmark = pytest.mark.e2e

# What the stop may take with the broker gone, and slack for this loaded machine: steps that
# e-mailed and recorded are handed back after the broker patience (+1 s for the e-mails then in
# flight and the checks' interval), leaving the group is given up after its limit, and the state
# flush after the patience with no record answered. The steps' whole grace (LONGEST_STOP_S) is
# not spent: before the patience, these stops took 28-29 s.
STOP_BUDGET_S = BROKER_PATIENCE_S + 1 + SOURCE_CLOSE_LIMIT_S + BROKER_PATIENCE_S + 6


def test_a_stop_with_the_broker_silent_ends_in_time_with_exit_0(
    stack: EmbeddedStack, broker: EmbeddedStack, tmp_path: Path
) -> None:
    assert STOP_BUDGET_S < SHUTDOWN_LIMIT_S
    env = isolated_env(
        {**stack.env(), "KAFKA_BOOTSTRAP_SERVERS": broker.env()["KAFKA_BOOTSTRAP_SERVERS"]}
    )
    # A backlog, so that steps are in flight (and offsets uncommitted) when the broker goes.
    records = order_records(seed=44, count=2000)
    producer = Producer(producer_config(env["KAFKA_BOOTSTRAP_SERVERS"], "silent-broker", 30))
    deliveries = produce_all(producer, env["PEDIDOS_TOPIC"], records, time.monotonic() + 60)
    assert not deliveries.problems("orders", len(records))
    services = Services(env, tmp_path)
    broker_group = broker.pid("kafka")
    assert broker_group is not None
    try:
        consumer = services.consumer()
        consumer.wait_log("order state reached", timeout=60, count=40)
        os.killpg(broker_group, signal.SIGSTOP)  # the tether and the JVM: up, answering nothing
        time.sleep(2)
        began = time.monotonic()
        code = consumer.stop(timeout=SHUTDOWN_LIMIT_S + 30)
        took = time.monotonic() - began
        assert code == 0, consumer.log()[-4000:]
        assert took < STOP_BUDGET_S, f"the stop took {took:.1f} s"
        log = consumer.log()
        assert "consumer stopped" in log
        # Steps e-mailed and recorded were waiting for the broker when the stop came.
        assert "for the broker to take their state record" in log
    finally:
        os.killpg(broker_group, signal.SIGCONT)  # or stopping it after the test waits for ever
        services.cleanup()
