"""Kafka spans after the OpenTelemetry messaging conventions: `send <topic>` (PRODUCER) around a
record's publish until the broker's ack, `process <topic>` (CONSUMER) around the work a record
triggers. The W3C `traceparent` travels in the record's headers beside `correlation-id`.

Written here rather than taken from the contrib confluent-kafka instrumentation, which uses
obsolete attribute names and ends its process span at the next `poll()`, not when the work ends.

The process span is a child of the record's send span *and* linked to it: the conventions ask
for the link (an async hop), the parent makes an order's whole walk one trace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, StatusCode

from pedidos.runtime import tracing

SYSTEM = "kafka"
# Headers the propagator writes; dropped from a record before writing fresh ones (a replayed
# dead letter carries those of its first life).
_TRACE_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})
_Headers = list[tuple[str, bytes]]


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode(errors="replace")
    return None


def start_send(
    topic: str, key: str, headers: Sequence[tuple[str, bytes]], partition: int | None
) -> tuple[Span | None, Sequence[tuple[str, bytes]]]:
    """The send span for one record (None when tracing is off) and the headers to publish,
    `traceparent` added. The caller ends the span with `delivered` or `failed`."""
    if not tracing.enabled():
        return None, headers
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": topic,
        "messaging.kafka.message.key": key,
    }
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    conversation = _header(headers, "correlation-id")
    if conversation:
        attributes["messaging.message.conversation_id"] = conversation
    span = tracing.tracer().start_span(
        f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    kept = [(k, v) for k, v in headers if k not in _TRACE_HEADERS]
    return span, kept + [(k, v.encode()) for k, v in carrier.items()]


def delivered(span: Span, partition: int, offset: int) -> None:
    span.set_attribute("messaging.destination.partition.id", str(partition))
    span.set_attribute("messaging.kafka.offset", offset)
    span.end()


def failed(span: Span, error: str, error_type: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(StatusCode.ERROR, error)
    span.end()


def _carrier(headers: _Headers) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in headers if k in _TRACE_HEADERS}


def processing(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    headers: _Headers,
    group: str,
    extra: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Span | None]:
    """The current span while a record's work runs (nothing at all when tracing is off: a
    shared no-op context, not a generator per record)."""
    if not tracing.enabled():
        return _NO_SPAN
    return _processing(topic, partition, offset, key, headers, group, extra)


_NO_SPAN: AbstractContextManager[None] = nullcontext()


@contextmanager
def _processing(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    headers: _Headers,
    group: str,
    extra: Mapping[str, Any] | None,
) -> Iterator[Span]:
    parent = propagate.extract(_carrier(headers))
    sent = trace.get_current_span(parent).get_span_context()
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.offset": offset,
        "messaging.consumer.group.name": group,
    }
    if key is not None:
        attributes["messaging.kafka.message.key"] = key.decode(errors="replace")
    conversation = _header(headers, "correlation-id")
    if conversation:
        attributes["messaging.message.conversation_id"] = conversation
    attributes.update(extra or {})
    with tracing.tracer().start_as_current_span(
        f"process {topic}",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=[Link(sent)] if sent.is_valid else None,
        attributes=attributes,
    ) as span:
        yield span
