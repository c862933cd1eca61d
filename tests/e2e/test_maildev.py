"""The demo's web inbox: an order's five e-mails delivered by the consumer to MailDev (npm
package, installed by the project into its cache) and listed by MailDev's REST API."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit import maildev
from devkit.credentials import producer_channel
from devkit.inbox import STATE_SLUGS
from devkit.net import free_port
from devkit.orders import order_request
from devkit.processes import Services
from devkit.stack import EmbeddedStack, StackPorts
from devkit.waiting import wait_for
from pedidos.v1 import orders_pb2_grpc

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("node") is None or not maildev.available(),
        reason="MailDev needs Node.js and npm",
    ),
]


@pytest.fixture
def web_inbox(tmp_path: Path) -> Iterator[EmbeddedStack]:
    inbox = EmbeddedStack(
        tmp_path / "maildev",
        StackPorts(free_port(), free_port(), free_port()),
        tied_to_parent=True,
        inbox="maildev",
    )
    inbox.start("smtp", timeout=600)  # the first run installs MailDev from npm
    try:
        yield inbox
    finally:
        inbox.stop("smtp")


def test_an_orders_five_emails_reach_maildev_with_their_subjects(
    services: Services, web_inbox: EmbeddedStack
) -> None:
    assert web_inbox.web_inbox_url is not None
    services.producer()
    services.consumer(SMTP_PORT=web_inbox.ports.smtp)
    client = orders_pb2_grpc.OrderServiceStub(producer_channel(services.env["GRPC_LISTEN"]))
    request = order_request()
    order_id = client.CreateOrder(request, timeout=10).order_id

    def five() -> list[dict[str, object]] | None:
        mine = [
            e
            for e in maildev.list_emails(web_inbox.web_inbox_url or "")
            if isinstance(e.get("headers"), dict)
            and e["headers"].get("x-pedidos-order-id") == order_id  # type: ignore[attr-defined]
        ]
        return mine if len(mine) >= 5 else None

    emails = wait_for(five, 90, "5 e-mails in MailDev", 0.5)
    by_state = {e["headers"]["x-pedidos-state"]: str(e["subject"]) for e in emails}
    assert sorted(by_state) == sorted(STATE_SLUGS)
    assert len(emails) == 5
    assert len(set(by_state.values())) == 5, by_state
    assert all(request.order.product_name in subject for subject in by_state.values())
    assert all(e["to"][0]["address"] == request.order.customer_email for e in emails)
