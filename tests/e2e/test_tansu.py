"""The smaller pass on Tansu, the fallback broker `make demo` uses where Java cannot run: the
whole pipeline and the demo itself. Everything else runs on Apache Kafka."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devkit.inbox import STATE_SLUGS, Inbox
from devkit.orders import order_request
from devkit.processes import REPO, Services
from devkit.stack import EmbeddedStack
from tests.e2e.test_pipeline import assert_documents, send_orders, wait_all_emails
from tests.integration.test_tracking import WALK, start_pipeline, stub, watch

pytestmark = pytest.mark.e2e


def test_every_order_walks_all_five_states_on_tansu(
    tansu_services: Services, stack: EmbeddedStack
) -> None:
    tansu_services.producer()
    tansu_services.consumer()
    order_ids = send_orders(tansu_services.env["PRODUCER_ADDRESS"], 20)
    states = wait_all_emails(Inbox(stack.maildir), order_ids)
    assert all(states[o] == STATE_SLUGS for o in order_ids), states
    assert_documents(tansu_services.env, order_ids)


def test_the_state_feed_follows_an_order_on_tansu(tansu_services: Services) -> None:
    """The feed's start by time is exact on Apache Kafka; on Tansu its timestamp filter must
    still deliver this order's states and nothing older (see adapters/kafka/state_feed.py)."""
    address, _ = start_pipeline(tansu_services)
    client = stub(address)
    created = client.CreateOrder(order_request(), timeout=10)
    states = [change.state for change in watch(client, created.order_id)]
    assert states == WALK[WALK.index(states[0]) :]


def test_demo_runs_on_tansu_when_asked(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "admin",
            "demo",
            "--orders",
            "2",
            "--no-keep-running",
            "--inbox",
            "maildir",
        ],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO),
            "COLUMNS": "120",
            "PEDIDOS_EMBEDDED_KAFKA": "tansu",
        },
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting the embedded stack (Tansu" in result.stdout
    assert "2/2 pedidos finalizados" in result.stdout
    assert len(list((tmp_path / ".stack" / "demo" / "mail" / "new").iterdir())) == 10
