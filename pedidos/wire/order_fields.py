"""The order's fields, named once for every wire format.

One row per field of `OrderDetails` as a plain value: its name (the keyword of
`OrderDetails.create`, and the field of the Elasticsearch documents), where the domain object
keeps it, and where a Kafka record's `order` object and the gRPC `OrderDetails` message keep it.
The record, document and proto mappers all walk this table, so adding a field to the order is one
row here (plus its rule in the domain, the .proto and the index templates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any

from pedidos.domain.order import OrderDetails

# Enum values are the domain's StrEnum members: strings to JSON, orjson and protobuf alike.
Value = str | int | None


@dataclass(frozen=True, slots=True)
class DetailField:
    name: str
    attribute: str  # dotted path inside OrderDetails
    record: tuple[str, ...]  # path inside a record's "order" object
    proto: tuple[str, ...]  # path inside orders_pb2.OrderDetails


def _plain(name: str) -> DetailField:
    """A field called the same everywhere."""
    return DetailField(name, name, (name,), (name,))


DETAIL_FIELDS: tuple[DetailField, ...] = (
    _plain("product_name"),
    DetailField("price_minor", "price.amount_minor", ("price", "amount_minor"), ("price", "amount_minor")),  # noqa: E501
    DetailField("currency", "price.currency", ("price", "currency"), ("price", "currency_code")),
    _plain("payment_gateway"),
    _plain("card_brand"),  # None for a bank transfer
    _plain("bank"),
    _plain("shipping_region"),
    _plain("shipping_address"),
    _plain("customer_email"),
)  # fmt: skip
FIELD_NAMES: tuple[str, ...] = tuple(field.name for field in DETAIL_FIELDS)
# One C-level call reads every field: these mappers run several times per consumed record.
_read_all: Any = attrgetter(*(field.attribute for field in DETAIL_FIELDS))


def values_of(details: OrderDetails) -> tuple[Value, ...]:
    """The fields' values in table order."""
    values: tuple[Value, ...] = _read_all(details)
    return values


@lru_cache(maxsize=10_000)
def flat_values(details: OrderDetails) -> Mapping[str, Value]:
    """The fields by name: `OrderDetails.create(**flat_values(d)) == d`.

    Shared, so never to be changed: every document of an order repeats its details.
    """
    return dict(zip(FIELD_NAMES, _read_all(details), strict=True))


def from_values(values: Sequence[object]) -> OrderDetails:
    """`OrderDetails.create` from values in table order; raises InvalidOrder naming the field."""
    if len(values) != len(FIELD_NAMES):
        raise ValueError(f"{len(FIELD_NAMES)} values expected, got {len(values)}")
    return OrderDetails.create(*values)


# Only these can be cached: any other type is invalid, and keeping them out means 1.0 or True
# never finds the entry of 1 (equal in Python, not to validation).
_CACHEABLE = frozenset({str, int, type(None)})


def validated(values: Sequence[object]) -> OrderDetails:
    """`from_values`, validating values that passed before only once.

    Every record of an order repeats its details, and a retry or a repeat order sends the same
    ones again; validating them (e-mail syntax above all) is most of decoding. Validation is
    deterministic and OrderDetails immutable, so the result can be shared.
    """
    if _CACHEABLE.issuperset(map(type, values)):
        return _validated(tuple(values))
    return from_values(values)


@lru_cache(maxsize=10_000)
def _validated(values: tuple[Value, ...]) -> OrderDetails:
    return from_values(values)


class NotAnObject(ValueError):
    """A value that should hold fields is not a JSON object; `path` names it."""

    def __init__(self, path: str) -> None:
        super().__init__(f"field {path!r} must be an object")
        self.path = path


# A shape's layout: each top-level key with either the position of its value in the table or,
# for a nested object, the same layout one level down.
_Layout = tuple[tuple[str, "int | _Layout"], ...]


def _layout(entries: Sequence[tuple[tuple[str, ...], int]]) -> _Layout:
    """The layout of fields given as (path, position in the table)."""
    groups: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for path, position in entries:
        groups.setdefault(path[0], []).append((path[1:], position))
    return tuple(
        (key, members[0][1] if not members[0][0] else _layout(members))
        for key, members in groups.items()
    )


def _fill(layout: _Layout, values: tuple[Value, ...]) -> dict[str, Any]:
    return {
        key: values[slot] if type(slot) is int else _fill(slot, values)  # type: ignore[arg-type]
        for key, slot in layout
    }


class JsonShape:
    """Where one format keeps each field: nested objects along each field's path."""

    def __init__(self, paths: Sequence[tuple[str, ...]], root: str) -> None:
        self._paths = tuple(paths)
        self._layout = _layout([(path, i) for i, path in enumerate(self._paths)])
        self._root = root

    def dump(self, details: OrderDetails) -> dict[str, Any]:
        return _fill(self._layout, _read_all(details))

    def values(self, data: object) -> list[object]:
        """The fields' values in table order (None where missing); raises NotAnObject."""
        values = []
        for path in self._paths:
            node = data
            for depth, part in enumerate(path):
                if not isinstance(node, dict):
                    raise NotAnObject(".".join((self._root, *path[:depth])))
                node = node.get(part)
            values.append(node)
        return values


RECORD_SHAPE = JsonShape([field.record for field in DETAIL_FIELDS], root="order")
