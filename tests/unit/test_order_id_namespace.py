"""The order id derived from (customer, idempotency key) is part of the contract.

Producer replicas, restarts and every release must turn the same retried request into the same
order id, or a retry becomes a second order; so the namespace is pinned to a literal here.
"""

from __future__ import annotations

from pedidos.domain.order import new_order_id


def test_the_id_of_a_customer_and_key_never_changes_between_releases() -> None:
    assert new_order_id("comprador@example.cl", "pedido-42") == (
        "3f350b2f-64b3-5d61-8d0d-923a0652a832"
    )
