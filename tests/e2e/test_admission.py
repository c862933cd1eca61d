"""CONSUMER_MAX_OPEN_ORDERS: a backlog is worked off order by order, not all at Procesando."""

from __future__ import annotations

import pytest

from consumer.admission import MIN_FETCH
from devkit.credentials import producer_channel
from devkit.inbox import STATE_SLUGS, Inbox
from devkit.orders import order_request
from devkit.processes import Services
from devkit.stack import EmbeddedStack
from pedidos.v1 import orders_pb2, orders_pb2_grpc
from tests.e2e.test_pipeline import assert_documents, wait_all_emails

pytestmark = pytest.mark.e2e
BACKLOG = 300
OPEN_LIMIT = 20


def most_open_at_once(arrivals: list[tuple[str, str]]) -> int:
    """The most orders that had their first e-mail and not yet their last, at any moment."""
    first, last = STATE_SLUGS[0], STATE_SLUGS[-1]
    open_now = peak = 0
    for _, state in arrivals:
        if state == first:
            open_now += 1
            peak = max(peak, open_now)
        elif state == last:
            open_now -= 1
    return peak


def test_a_backlog_is_walked_with_a_bounded_number_of_open_orders(
    services: Services, stack: EmbeddedStack
) -> None:
    services.producer()
    with producer_channel(services.env["PRODUCER_ADDRESS"]) as channel:
        response = orders_pb2_grpc.OrderServiceStub(channel).CreateOrderBatch(
            orders_pb2.CreateOrderBatchRequest(
                orders=[order_request(key=f"atraso-{i}") for i in range(BACKLOG)]
            ),
            timeout=30,
        )
    order_ids = [result.accepted.order_id for result in response.results]
    assert len(set(order_ids)) == BACKLOG

    # The whole backlog waits on `Pedidos` before the consumer starts.
    services.consumer(
        CONSUMER_MAX_OPEN_ORDERS=OPEN_LIMIT, STAGE_DELAY_MIN_S="0", STAGE_DELAY_MAX_S="0"
    )
    inbox = Inbox(stack.maildir)
    wait_all_emails(inbox, order_ids, timeout=180)

    arrivals = inbox.arrivals(order_ids)
    assert len(arrivals) == 5 * BACKLOG
    # One fetch near the bound may bring up to MIN_FETCH new orders.
    assert most_open_at_once(arrivals) <= OPEN_LIMIT + MIN_FETCH
    # Orders finish while most of the backlog has not started: the first Finalizado e-mail
    # arrives before the 100th order's first e-mail.
    firsts = [i for i, (_, state) in enumerate(arrivals) if state == STATE_SLUGS[0]]
    first_final = next(i for i, (_, state) in enumerate(arrivals) if state == STATE_SLUGS[-1])
    assert first_final < firsts[99]
    states = inbox.states_by_order(order_ids)
    assert all(states[o] == STATE_SLUGS for o in order_ids)
    assert_documents(services.env, order_ids)
