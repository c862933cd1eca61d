"""Correctness of what was measured: a figure is reported only if its run did the right thing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from devkit.inbox import STATE_SLUGS
from pedidos.domain.states import ALL_STATES

STATE_NAMES = tuple(s.value for s in ALL_STATES)


@dataclass(frozen=True, slots=True)
class PipelineCounts:
    """What Elasticsearch and the inbox hold after an end-to-end run (its own indices)."""

    orders_total: int
    orders_finalizado: int
    events_by_state: Mapping[str, int]
    events_email_sent: int
    inbox_messages: int | None  # None: the sink discards mail, nothing to count


def pipeline_problems(expected_orders: int, counts: PipelineCounts) -> list[str]:
    """Every order Finalizado, with exactly one event per state and five e-mails."""
    n = expected_orders
    problems = []
    if counts.orders_total != n:
        problems.append(f"orders index holds {counts.orders_total} orders, expected {n}")
    if counts.orders_finalizado != n:
        problems.append(f"{counts.orders_finalizado} of {n} orders are Finalizado")
    events = sum(counts.events_by_state.values())
    if events != 5 * n:
        problems.append(f"events index holds {events} events, expected {5 * n}")
    for state in STATE_NAMES:
        got = counts.events_by_state.get(state, 0)
        if got != n:
            problems.append(f"{got} {state} events, expected {n}")
    unknown = set(counts.events_by_state) - set(STATE_NAMES)
    if unknown:
        problems.append(f"events with unknown states: {sorted(unknown)}")
    if counts.events_email_sent != 5 * n:
        problems.append(f"{counts.events_email_sent} events say e-mail sent, expected {5 * n}")
    if counts.inbox_messages is not None and counts.inbox_messages != 5 * n:
        problems.append(f"inbox received {counts.inbox_messages} e-mails, expected {5 * n}")
    return problems


def inbox_problems(
    order_ids: Iterable[str], states_by_order: Mapping[str, list[str]], shown: int = 3
) -> list[str]:
    """Each order received each state's e-mail exactly once (order of arrival not required)."""
    wrong = []
    for order_id in order_ids:
        states = states_by_order.get(order_id, [])
        if len(states) != len(STATE_SLUGS) or set(states) != set(STATE_SLUGS):
            wrong.append(f"{order_id}: {states}")
    if not wrong:
        return []
    return [f"{len(wrong)} orders without exactly one e-mail per state, e.g. {wrong[:shown]}"]


def rpc_problems(completed: int, errors: Mapping[str, int]) -> list[str]:
    problems = []
    if completed <= 0:
        problems.append("no call completed in the measurement window")
    failed = sum(errors.values())
    if failed:
        problems.append(f"{failed} calls failed: {dict(errors)}")
    return problems


def delivery_problems(what: str, expected: int, delivered: int, failed: int) -> list[str]:
    problems = []
    if failed:
        problems.append(f"{failed} {what} failed")
    if delivered != expected:
        problems.append(f"{delivered} of {expected} {what} confirmed")
    return problems
