"""An order published twice (two producer replicas, a producer restart) stays one order: a
copy that reaches a consumer after a restart keeps the first acceptance time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from devkit.orders import make_details
from pedidos.domain.order import Order
from pedidos.domain.states import OrderState
from tests.unit.fakes import T0, FakeIndex
from tests.unit.test_order_walk import ORDER_ID, Harness


def test_a_late_copy_of_an_order_keeps_the_first_acceptance_time() -> None:
    index = FakeIndex()
    first, restarted = Harness(index=index), Harness(index=index)
    accepted = T0 - timedelta(seconds=1)
    asyncio.run(
        first.walk.enter(Order(ORDER_ID, make_details(), accepted), OrderState.PROCESANDO, "a")
    )
    copy = Order(ORDER_ID, make_details(), T0 + timedelta(seconds=5))
    asyncio.run(restarted.walk.enter(copy, OrderState.PROCESANDO, "b"))
    assert restarted.mailer.sent == []
    assert index.orders[ORDER_ID]["accepted_at"] == "2026-11-23T11:59:59.000Z"
    (record,) = restarted.states_published()
    assert record.order.accepted_at == accepted
