"""The order state machine: Procesando → Preparación → Enviado → Entregado → Finalizado."""

from __future__ import annotations

from enum import StrEnum


class IllegalTransition(ValueError):
    """A state change that is not the single next step of the walk."""


class UnknownState(ValueError):
    """A state name that is not part of the walk."""


class OrderState(StrEnum):
    PROCESANDO = "Procesando"
    PREPARACION = "Preparación"
    ENVIADO = "Enviado"
    ENTREGADO = "Entregado"
    FINALIZADO = "Finalizado"

    @classmethod
    def parse(cls, name: str) -> OrderState:
        try:
            return cls(name)
        except ValueError:
            raise UnknownState(f"unknown order state {name!r}") from None

    @property
    def position(self) -> int:
        return _ORDER.index(self)

    @property
    def rank(self) -> int:
        """How far along the walk: 1 for Procesando … 5 for Finalizado. What is stored about an
        order only moves to a higher rank, never back (a late or repeated write of an earlier
        state must not replace a later one); stores use it as the version of the order."""
        return self.position + 1

    @property
    def is_final(self) -> bool:
        return self is OrderState.FINALIZADO

    @property
    def slug(self) -> str:
        """ASCII name, for template files and message ids."""
        return self.name.lower()

    def next(self) -> OrderState:
        if self.is_final:
            raise IllegalTransition(f"{self.value} is the last state")
        return _ORDER[self.position + 1]

    def check_transition(self, target: OrderState) -> None:
        if self.is_final or target is not self.next():
            raise IllegalTransition(f"illegal transition {self.value} → {target.value}")


FIRST_STATE = OrderState.PROCESANDO
_ORDER: tuple[OrderState, ...] = tuple(OrderState)
ALL_STATES = _ORDER


def later(a: OrderState, b: OrderState) -> OrderState:
    """The state further along the walk (`b` if they are the same)."""
    return a if a.position > b.position else b
