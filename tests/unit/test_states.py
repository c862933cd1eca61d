import itertools
from datetime import UTC, datetime, timedelta

import pytest

from devkit.orders import make_details
from pedidos.domain.order import Order
from pedidos.domain.states import (
    ALL_STATES,
    IllegalTransition,
    OrderState,
    UnknownState,
    later,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_the_walk_is_the_five_states_in_order() -> None:
    assert [s.value for s in ALL_STATES] == [
        "Procesando",
        "Preparación",
        "Enviado",
        "Entregado",
        "Finalizado",
    ]
    assert [s.next() for s in ALL_STATES[:-1]] == list(ALL_STATES[1:])


def test_a_later_state_ranks_higher_and_wins() -> None:
    assert [s.rank for s in ALL_STATES] == [1, 2, 3, 4, 5]
    for earlier, after in itertools.pairwise(ALL_STATES):
        assert later(earlier, after) is after
        assert later(after, earlier) is after
    assert later(OrderState.PROCESANDO, OrderState.FINALIZADO) is OrderState.FINALIZADO
    assert later(OrderState.ENVIADO, OrderState.ENVIADO) is OrderState.ENVIADO


def test_finalizado_has_no_next_state() -> None:
    with pytest.raises(IllegalTransition):
        OrderState.FINALIZADO.next()


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (OrderState.PROCESANDO, OrderState.ENVIADO),  # skipping a step
        (OrderState.ENVIADO, OrderState.PREPARACION),  # going back
        (OrderState.ENVIADO, OrderState.ENVIADO),  # staying
        (OrderState.FINALIZADO, OrderState.PROCESANDO),  # past the end
    ],
)
def test_only_the_single_next_step_is_legal(current: OrderState, target: OrderState) -> None:
    with pytest.raises(IllegalTransition, match="illegal transition"):
        current.check_transition(target)


def test_unknown_state_names_are_rejected() -> None:
    with pytest.raises(UnknownState):
        OrderState.parse("Perdido")
    assert OrderState.parse("Preparación") is OrderState.PREPARACION


def test_an_order_walks_forward_and_records_each_timestamp() -> None:
    order = Order("o-1", make_details(), accepted_at=T0)
    assert order.state is None
    assert order.next_state() is OrderState.PROCESANDO
    for step, state in enumerate(ALL_STATES):
        order.enter(state, T0 + timedelta(seconds=step))
    assert order.state is OrderState.FINALIZADO
    assert order.next_state() is None
    assert order.reached[OrderState.ENVIADO] == T0 + timedelta(seconds=2)


def test_an_order_must_start_at_procesando() -> None:
    order = Order("o-1", make_details(), accepted_at=T0)
    with pytest.raises(IllegalTransition):
        order.enter(OrderState.PREPARACION, T0)


def test_an_order_cannot_enter_a_state_twice() -> None:
    order = Order("o-1", make_details(), accepted_at=T0)
    order.enter(OrderState.PROCESANDO, T0)
    with pytest.raises(IllegalTransition):
        order.enter(OrderState.PROCESANDO, T0)
