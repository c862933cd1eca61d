"""The generations the order walk takes as leases (consumer/assignments.py)."""

from __future__ import annotations

from consumer.assignments import Assignments

BOTH = [("Pedidos", 0), ("Pedidos.estados", 0), ("Pedidos", 1), ("Pedidos.estados", 1)]


def generation(assignments: Assignments, topic: str, partition: int, offset: int = 0) -> int:
    ticket = assignments.start(topic, partition, offset)
    assert ticket is not None
    return ticket.generation


def test_partitions_assigned_together_share_a_generation() -> None:
    assignments = Assignments()
    assignments.assign(BOTH)
    assert {generation(assignments, t, p) for t, p in BOTH} == {1}


def test_a_partition_assigned_again_never_gets_a_generation_used_before() -> None:
    assignments = Assignments(revoke_wait_s=0)
    seen = set()
    for offset in range(3):
        assignments.assign(BOTH)
        seen.add(generation(assignments, "Pedidos.estados", 0, offset))
        assignments.revoke(BOTH)
    assignments.assign(BOTH[:2])
    assignments.assign(BOTH[2:])  # another rebalance's partitions
    assert generation(assignments, "Pedidos.estados", 1) != generation(
        assignments, "Pedidos.estados", 0, 3
    )
    seen.add(generation(assignments, "Pedidos.estados", 0, 4))
    assert len(seen) == 4
