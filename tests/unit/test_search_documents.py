import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from devkit.orders import make_details
from pedidos.domain.order import Order
from pedidos.domain.states import ALL_STATES, OrderState
from pedidos.wire.search_documents import (
    event_document,
    iso,
    order_document,
    order_from_document,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TEMPLATES = Path(__file__).resolve().parents[2] / "admin" / "elasticsearch"


def walked(upto: OrderState) -> Order:
    order = Order("o-1", make_details(), T0)
    for step, state in enumerate(ALL_STATES[: upto.position + 1]):
        order.enter(state, T0 + timedelta(seconds=2 * step + 1))
    return order


def mapped_fields(template: str) -> set[str]:
    def walk(properties: dict, prefix: str = "") -> set[str]:
        names = set()
        for name, spec in properties.items():
            names.add(prefix + name)
            names |= walk(spec.get("properties", {}), f"{prefix}{name}.")
        return names

    data = json.loads((TEMPLATES / template).read_text())
    return walk(data["template"]["mappings"]["properties"])


def flat(doc: dict, prefix: str = "") -> set[str]:
    names = set()
    for key, value in doc.items():
        names.add(prefix + key)
        if isinstance(value, dict):
            names |= flat(value, f"{prefix}{key}.")
    return names


def test_event_document_measures_the_stage() -> None:
    doc = event_document(
        walked(OrderState.ENVIADO),
        OrderState.ENVIADO,
        email_status="sent",
        email_message_id="<m>",
        email_error=None,
        correlation_id="c",
    )
    assert doc["state"] == "Enviado"
    assert doc["state_index"] == 2
    assert doc["@timestamp"] == "2026-11-23T12:00:05.000Z"
    assert doc["stage_duration_ms"] == 2000  # from Preparación (12:00:03) to Enviado
    assert doc["price_minor"] == 129_990
    assert doc["currency"] == "CLP"


def test_first_stage_is_measured_from_acceptance() -> None:
    order = walked(OrderState.PROCESANDO)
    doc = event_document(
        order,
        OrderState.PROCESANDO,
        email_status="sent",
        email_message_id="<m>",
        email_error=None,
        correlation_id="c",
    )
    assert doc["stage_duration_ms"] == 1000


def test_order_document_has_current_state_and_every_timestamp() -> None:
    doc = order_document(walked(OrderState.FINALIZADO))
    assert doc["state"] == "Finalizado"
    assert set(doc["reached_at"]) == {
        "procesando",
        "preparacion",
        "enviado",
        "entregado",
        "finalizado",
    }


def test_documents_only_use_mapped_fields() -> None:
    # The templates are strict: an unmapped field would be rejected by Elasticsearch.
    event = event_document(
        walked(OrderState.ENVIADO),
        OrderState.ENVIADO,
        email_status="rejected",
        email_message_id="<m>",
        email_error="550",
        correlation_id="c",
    )
    # The search index adds the trace id to both when tracing is on.
    traced = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    assert flat({**event, **traced}) <= mapped_fields("pedidos-order-events.json")
    assert flat({**order_document(walked(OrderState.FINALIZADO)), **traced}) <= mapped_fields(
        "pedidos-orders.json"
    )


def test_an_order_read_back_keeps_its_trace_id() -> None:
    doc = order_document(walked(OrderState.ENVIADO))
    assert order_from_document(doc).trace_id is None
    traced = order_from_document({**doc, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
    assert traced.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_timestamps_keep_their_offset_even_for_an_equal_utc_instant() -> None:
    """iso() caches UTC values; an equal instant at another offset must not reuse the entry."""
    at = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
    chile = at.astimezone(timezone(timedelta(hours=-3)))
    assert at == chile
    assert iso(at) == "2026-11-23T12:00:00.123Z"
    assert iso(chile) == "2026-11-23T09:00:00.123-03:00"
    assert iso(at) == "2026-11-23T12:00:00.123Z"
