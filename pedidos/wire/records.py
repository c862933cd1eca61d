"""Kafka record format: versioned JSON, decoded through the same domain rules as the gRPC input.

Topic `Pedidos` carries `pedidos.order` v1 (one per accepted order); topic `Pedidos.estados`
carries `pedidos.state` v1 (one per state an order reached). Both are keyed by order_id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from pedidos.domain.order import InvalidOrder, Order, OrderDetails, validate_order_id
from pedidos.domain.states import ALL_STATES, OrderState, UnknownState
from pedidos.wire.order_fields import RECORD_SHAPE, NotAnObject, validated
from pedidos.wire.timestamps import iso_z, iso_z_uncached, parse_iso

CONTENT_TYPE = "application/json"
ORDER_SCHEMA = "pedidos.order"
STATE_SCHEMA = "pedidos.state"
SCHEMA_VERSION = 1
# No legitimate record comes near this; bigger ones are rejected before parsing.
MAX_RECORD_BYTES = 64 * 1024

Headers = list[tuple[str, bytes]]

# A state record's `reached` names states by their value; the field names are for error messages.
_STATE_BY_NAME: dict[str, OrderState] = {state.value: state for state in ALL_STATES}
_REACHED_FIELD: dict[str, str] = {state.value: f"reached.{state.value}" for state in ALL_STATES}


class PoisonRecord(ValueError):
    """A record that can never be processed; it belongs on the dead-letter topic."""


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    order: Order
    correlation_id: str


@dataclass(frozen=True, slots=True)
class StateReached:
    """`order` has just entered `state`; the next step is due at `stage_ends_at`."""

    order: Order
    state: OrderState
    stage_ends_at: datetime
    email_status: str
    correlation_id: str


Record = OrderAccepted | StateReached


@lru_cache(maxsize=10_000)
def details_to_dict(details: OrderDetails) -> Mapping[str, Any]:
    """The record's `order` object; shared, so never to be changed: an order's records all
    repeat it."""
    return RECORD_SHAPE.dump(details)


def details_from_dict(data: Any) -> OrderDetails:
    try:
        return validated(RECORD_SHAPE.values(data))
    except NotAnObject as exc:
        raise PoisonRecord(str(exc)) from None
    except InvalidOrder as exc:
        raise PoisonRecord(f"invalid order: {exc}") from None


def _ts(value: datetime) -> str:
    return iso_z(value, "microseconds")


def _parse_ts(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise PoisonRecord(f"field {name!r} must be a timestamp string")
    try:
        parsed = parse_iso(value)
    except ValueError:
        raise PoisonRecord(f"field {name!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        raise PoisonRecord(f"field {name!r} must carry a UTC offset")
    return parsed


def headers_for(schema: str, correlation_id: str) -> Headers:
    return [
        ("content-type", CONTENT_TYPE.encode()),
        ("pedidos-schema", f"{schema}.v{SCHEMA_VERSION}".encode()),
        ("correlation-id", correlation_id.encode()),
    ]


def _dumps(data: dict[str, Any]) -> bytes:
    # orjson writes what json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    # did, byte for byte (compact, UTF-8, same escapes), several times faster.
    return orjson.dumps(data)


def _loads(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        strict_error: ValueError = exc
    # orjson refuses some input the json module takes (NaN, lone surrogates, a BOM, UTF-16):
    # judge such a record as before, so it fails validation with the same reason.
    try:
        return json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoisonRecord(f"not JSON: {exc}") from None
    except RecursionError:
        raise PoisonRecord(f"not JSON: {strict_error}") from None


def encode_order_accepted(order: Order) -> bytes:
    # Written once per order, by the producer: the caches of details_to_dict and iso_z (for
    # the records and documents that repeat an order's details and times) would only miss, and
    # keep every new order's objects for the garbage collector to walk.
    return _dumps(
        {
            "schema": ORDER_SCHEMA,
            "version": SCHEMA_VERSION,
            "order_id": order.order_id,
            "accepted_at": iso_z_uncached(order.accepted_at, "microseconds"),
            "order": RECORD_SHAPE.dump(order.details),
        }
    )


def encode_state_reached(event: StateReached) -> bytes:
    order = event.order
    return _dumps(
        {
            "schema": STATE_SCHEMA,
            "version": SCHEMA_VERSION,
            "order_id": order.order_id,
            "state": event.state.value,
            "stage_ends_at": _ts(event.stage_ends_at),
            "email_status": event.email_status,
            "accepted_at": _ts(order.accepted_at),
            "reached": {state.value: _ts(at) for state, at in order.reached.items()},
            "order": details_to_dict(order.details),
        }
    )


# The state a state record says was reached, beside its body: a consumer that already took
# the step it triggers (ahead of it) tells so without decoding the record.
STATE_HEADER = "pedidos-state"
_STATE_BY_HEADER = {state.value.encode(): state for state in OrderState}


def state_headers(state: OrderState, correlation_id: str) -> Headers:
    return [*headers_for(STATE_SCHEMA, correlation_id), (STATE_HEADER, state.value.encode())]


def state_in_headers(headers: Headers | None) -> OrderState | None:
    """The `STATE_HEADER` of a record, None without a known one."""
    for key, value in headers or ():
        if key == STATE_HEADER:
            return _STATE_BY_HEADER.get(value) if value is not None else None
    return None


def header_value(headers: Headers | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            try:
                return value.decode() if value is not None else None
            except UnicodeDecodeError:
                return None
    return None


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$")


def sampled_trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` header whose trace is sampled (recorded), else None.
    Read here, without OpenTelemetry, so the producer's state feed knows an order's trace."""
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent)
    if match is None or not int(match[2], 16) & 1 or match[1] == "0" * 32:
        return None
    return match[1]


def decode(value: bytes | None, headers: Headers | None = None) -> Record:
    """Parse and validate a record of either schema; raise PoisonRecord on anything wrong."""
    data = _envelope(value)
    order = _order(data)
    order.trace_id = sampled_trace_id(header_value(headers, "traceparent"))
    correlation_id = header_value(headers, "correlation-id") or order.order_id
    if data["schema"] == ORDER_SCHEMA:
        return OrderAccepted(order=order, correlation_id=correlation_id)
    return _state_reached(data, order, correlation_id)


def _envelope(value: bytes | None) -> dict[str, Any]:
    """The record as a JSON object of a known schema and version."""
    if value is None:
        raise PoisonRecord("empty record (tombstone)")
    if len(value) > MAX_RECORD_BYTES:
        raise PoisonRecord(f"record of {len(value)} bytes exceeds {MAX_RECORD_BYTES}")
    data = _loads(value)
    if not isinstance(data, dict):
        raise PoisonRecord("record must be a JSON object")
    schema, version = data.get("schema"), data.get("version")
    if schema not in (ORDER_SCHEMA, STATE_SCHEMA):
        raise PoisonRecord(f"unknown schema {schema!r}")
    if version != SCHEMA_VERSION:
        raise PoisonRecord(f"unsupported {schema} version {version!r}")
    return data


@lru_cache(maxsize=20_000)
def _valid_order_id(order_id: str) -> str:
    """Every record of an order repeats its id: the UUID parse is done once per id (a pure
    function of the string; an invalid one raises and is not cached)."""
    return validate_order_id(order_id)


def _order(data: dict[str, Any]) -> Order:
    raw_id = data.get("order_id")
    # Only a str can be a cache key (a list would not hash); anything else fails validation.
    check = _valid_order_id if type(raw_id) is str else validate_order_id
    try:
        order_id = check(raw_id)  # type: ignore[arg-type]
    except InvalidOrder as exc:
        raise PoisonRecord(str(exc)) from None
    return Order(
        order_id=order_id,
        details=details_from_dict(data.get("order")),
        accepted_at=_parse_ts(data.get("accepted_at"), "accepted_at"),
    )


def _state_reached(data: dict[str, Any], order: Order, correlation_id: str) -> StateReached:
    """The rest of a `pedidos.state` record: the states `order` reached, in the walk's order."""
    reached = data.get("reached")
    if not isinstance(reached, dict):
        raise PoisonRecord("field 'reached' must be an object")
    name = data.get("state")
    state = _STATE_BY_NAME.get(name) if type(name) is str else None
    walked = ALL_STATES[: len(reached)]
    if state is not None and tuple(map(_STATE_BY_NAME.get, reached)) == walked:
        # What every record we write holds: the walk's first states, in order. Entering them
        # one by one (below) would accept exactly this, so it is taken as it is.
        order.reached = {
            walked[i]: _parse_ts(at, _REACHED_FIELD[n]) for i, (n, at) in enumerate(reached.items())
        }
    else:
        state = _enter_one_by_one(order, name, reached)
    if order.state is not state:
        raise PoisonRecord(f"state {state.value} does not match the states reached")
    email_status = data.get("email_status")
    if not isinstance(email_status, str):
        raise PoisonRecord("field 'email_status' must be a string")
    return StateReached(
        order=order,
        state=state,
        stage_ends_at=_parse_ts(data.get("stage_ends_at"), "stage_ends_at"),
        email_status=email_status,
        correlation_id=correlation_id,
    )


def _enter_one_by_one(order: Order, name: Any, reached: dict[str, Any]) -> OrderState:
    """Any other `reached`: the domain enters each state and names what is wrong."""
    try:
        state = OrderState.parse(name)
        for reached_state, at in sorted(
            ((OrderState.parse(n), a) for n, a in reached.items()), key=lambda p: p[0].position
        ):
            order.enter(reached_state, _parse_ts(at, f"reached.{reached_state.value}"))
    except (UnknownState, ValueError) as exc:
        raise PoisonRecord(str(exc)) from None
    return state
