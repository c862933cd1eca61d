"""The e-mails a real consumer sends carry the tracker with the time the order reached each
state (the consumer passes the walk so far), the same times GetOrder reports."""

from __future__ import annotations

from datetime import datetime
from email import message_from_bytes, policy

import pytest
from babel.dates import format_datetime

from devkit.credentials import producer_channel
from devkit.inbox import Inbox, part_text
from devkit.orders import order_request
from devkit.processes import Services
from devkit.stack import EmbeddedStack
from devkit.waiting import wait_for
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from pedidos.wire.proto_mapping import datetime_from_timestamp, state_from_proto
from tests.integration.test_tracking import start_pipeline
from tests.unit.test_email_rendering import _Tracker

pytestmark = pytest.mark.integration


def shown(at: datetime) -> str:
    return str(format_datetime(at, "d MMM, HH:mm", locale="es"))


def test_each_email_shows_the_times_the_order_reached_its_states(
    services: Services, stack: EmbeddedStack
) -> None:
    address, _ = start_pipeline(services)
    stub = orders_pb2_grpc.OrderServiceStub(producer_channel(address))
    order_id = stub.CreateOrder(order_request(), timeout=10).order_id
    inbox = Inbox(stack.maildir)
    request = orders_pb2.GetOrderRequest(order_id=order_id)
    wait_for(lambda: len(inbox.arrivals([order_id])) == 5, 120, "the order's five e-mails")
    # The e-mail goes out before the state is recorded: wait until GetOrder has all five.
    order = wait_for(
        lambda: found if len((found := stub.GetOrder(request, timeout=10)).reached) == 5 else None,
        60,
        "GetOrder to report the five states",
    )
    reached = {
        state_from_proto(item.state): datetime_from_timestamp(item.reached_at)
        for item in order.reached
    }
    assert list(reached) == list(ALL_STATES)

    for raw in inbox.messages_for(order_id):
        message = message_from_bytes(raw, policy=policy.default)
        state = next(s for s in ALL_STATES if s.slug == message["X-Pedidos-State"])
        expected = [
            shown(reached[step]) if step.position <= state.position else "pendiente"
            for step in ALL_STATES
        ]
        tracker = _Tracker(part_text(message, "html"))
        assert [texts[-1] for texts in tracker.texts] == expected, state
        assert [step.get("aria-current") for step in tracker.steps].index("step") == (
            state.position
        )
        text = part_text(message, "plain")
        for step, when in zip(ALL_STATES, expected, strict=True):
            assert f"] {step.value.ljust(12)} {when}" in text, (state, step)
    assert [slug for _, slug in inbox.arrivals([order_id])][-1] == OrderState.FINALIZADO.slug
