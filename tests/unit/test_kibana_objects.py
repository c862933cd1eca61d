"""The Kibana saved objects: well-formed, self-consistent, and only using mapped fields."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from admin.kibana import referenced_fields
from pedidos.domain.states import ALL_STATES

ROOT = Path(__file__).resolve().parents[2]
NDJSON = ROOT / "admin" / "kibana" / "pedidos.ndjson"
TEMPLATES = sorted((ROOT / "admin" / "elasticsearch").glob("*.json"))


def _objects() -> list[dict[str, Any]]:
    lines = NDJSON.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _by_id() -> dict[str, dict[str, Any]]:
    return {obj["id"]: obj for obj in _objects()}


def _flatten(properties: dict[str, Any], prefix: str = "") -> set[str]:
    """Every addressable field of a mapping: nested objects and multi-fields included."""
    names: set[str] = set()
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            names |= _flatten(spec["properties"], f"{path}.")
        else:
            names.add(path)
        for sub in spec.get("fields", {}):
            names.add(f"{path}.{sub}")
    return names


def _mapped_fields_by_pattern() -> dict[str, set[str]]:
    fields: dict[str, set[str]] = {}
    for path in TEMPLATES:
        template = json.loads(path.read_text("utf-8"))
        mapped = _flatten(template["template"]["mappings"]["properties"])
        for pattern in template["index_patterns"]:
            fields[pattern] = mapped
    return fields


def test_every_line_is_one_json_object() -> None:
    for number, line in enumerate(NDJSON.read_text("utf-8").splitlines(), start=1):
        assert line.strip(), f"line {number} is blank: Kibana's import rejects it"
        assert isinstance(json.loads(line), dict), f"line {number} is not a JSON object"


def test_every_object_has_id_type_and_attributes() -> None:
    for obj in _objects():
        assert obj.get("id"), obj
        assert obj.get("type"), obj
        assert isinstance(obj.get("attributes"), dict), obj["id"]
        assert isinstance(obj.get("references", []), list), obj["id"]


def test_ids_are_unique_and_readable() -> None:
    ids = [obj["id"] for obj in _objects()]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("pedidos-") for i in ids), ids


def test_data_views_match_the_index_templates() -> None:
    views = {
        obj["attributes"]["title"]: obj["attributes"]["timeFieldName"]
        for obj in _objects()
        if obj["type"] == "index-pattern"
    }
    assert views == {"pedidos-order-events*": "@timestamp", "pedidos-orders*": "accepted_at"}
    assert {"pedidos-events-dataview", "pedidos-orders-dataview"} <= set(_by_id())


def test_every_reference_points_to_an_object_in_the_file() -> None:
    objects = _by_id()
    for obj in objects.values():
        for reference in obj.get("references", []):
            target = objects.get(reference["id"])
            assert target is not None, f"{obj['id']} → missing {reference['id']}"
            assert target["type"] == reference["type"], f"{obj['id']} → {reference}"


def test_dashboard_panels_resolve_to_its_references() -> None:
    dashboard = _by_id()["pedidos-dashboard"]
    assert dashboard["type"] == "dashboard"
    assert dashboard["attributes"]["title"] == "Pedidos"
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    references = {ref["name"]: ref for ref in dashboard["references"]}
    lens_ids = {obj["id"] for obj in _objects() if obj["type"] == "lens"}
    shown = set()
    for panel in panels:
        # Kibana looks a panel's reference up as "<panelIndex>:<panelRefName>".
        reference = references[f"{panel['panelIndex']}:{panel['panelRefName']}"]
        assert panel["type"] == reference["type"]
        shown.add(reference["id"])
    assert shown == lens_ids, "every visualization is on the dashboard, once"
    assert len(panels) == len(lens_ids)


def test_dashboard_panels_do_not_overlap() -> None:
    dashboard = _by_id()["pedidos-dashboard"]
    cells: set[tuple[int, int]] = set()
    for panel in json.loads(dashboard["attributes"]["panelsJSON"]):
        grid = panel["gridData"]
        assert grid["x"] + grid["w"] <= 48, panel["panelIndex"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"panel {panel['panelIndex']} overlaps another"
        cells |= area


def test_every_lens_layer_has_its_data_view_reference() -> None:
    for obj in _objects():
        if obj["type"] != "lens":
            continue
        names = {ref["name"] for ref in obj["references"]}
        layers = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
        for layer_id, layer in layers.items():
            assert f"indexpattern-datasource-layer-{layer_id}" in names, obj["id"]
            assert set(layer["columnOrder"]) == set(layer["columns"]), obj["id"]


def test_the_requested_charts_are_there() -> None:
    objects = _by_id()
    fields = referenced_fields(NDJSON)
    assert {"state", "stage_duration_ms", "email_status"} <= fields["pedidos-order-events*"]
    assert {"state", "shipping_region", "payment_gateway", "product_name"} <= fields[
        "pedidos-orders*"
    ]
    duration = objects["pedidos-lens-stage-duration"]["attributes"]["state"]
    columns = duration["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"]
    operations = {
        (c["operationType"], c.get("params", {}).get("percentile")) for c in columns.values()
    }
    assert {("average", None), ("percentile", 95)} <= operations


def test_filters_only_name_values_the_consumer_writes() -> None:
    allowed = {"state": {s.value for s in ALL_STATES}, "email_status": {"sent", "rejected"}}
    seen = set()
    for obj in _objects():
        if obj["type"] != "lens":
            continue
        layers = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
        for layer in layers.values():
            for column in layer["columns"].values():
                query = column.get("filter", {}).get("query", "")
                for field, value in re.findall(r'([\w.@]+)\s*:\s*"([^"]*)"', query):
                    assert value in allowed[field], f"{obj['id']}: {field} never is {value!r}"
                    seen.add((field, value))
    assert {("state", "Finalizado"), ("email_status", "rejected")} <= seen


@pytest.mark.parametrize("title", ["pedidos-order-events*", "pedidos-orders*"])
def test_every_referenced_field_exists_in_the_index_template(title: str) -> None:
    mapped = _mapped_fields_by_pattern()
    used = referenced_fields(NDJSON)[title]
    assert used, f"no visualization reads {title}"
    missing = used - mapped[title]
    assert not missing, f"{title}: fields not in the index template: {sorted(missing)}"


def test_flatten_sees_nested_objects_and_multi_fields() -> None:
    orders = _mapped_fields_by_pattern()["pedidos-orders*"]
    assert {"reached_at.finalizado", "shipping_address", "shipping_address.keyword"} <= orders
    assert "reached_at" not in orders


def test_referenced_fields_reads_filters_and_custom_ranking(tmp_path: Path) -> None:
    view = {
        "id": "v",
        "type": "index-pattern",
        "attributes": {"title": "x*", "timeFieldName": "t"},
        "references": [],
    }
    column = {
        "operationType": "terms",
        "sourceField": "a",
        "params": {"orderAgg": {"operationType": "min", "sourceField": "b"}},
        "filter": {"language": "kuery", "query": 'c : "d: e" and not f.g:1'},
    }
    lens = {
        "id": "l",
        "type": "lens",
        "attributes": {
            "state": {
                "query": {"language": "kuery", "query": "h : *"},
                "filters": [{"meta": {"key": "i"}}],
                "datasourceStates": {
                    "formBased": {"layers": {"L": {"columns": {"1": column}, "columnOrder": ["1"]}}}
                },
            }
        },
        "references": [
            {"id": "v", "type": "index-pattern", "name": "indexpattern-datasource-layer-L"}
        ],
    }
    path = tmp_path / "objects.ndjson"
    path.write_text(json.dumps(view) + "\n" + json.dumps(lens) + "\n", "utf-8")
    assert referenced_fields(path) == {"x*": {"t", "a", "b", "c", "f.g", "h", "i"}}


def test_referenced_fields_refuses_legacy_visualizations(tmp_path: Path) -> None:
    path = tmp_path / "objects.ndjson"
    path.write_text(json.dumps({"id": "v", "type": "visualization", "attributes": {}}) + "\n")
    with pytest.raises(ValueError, match="use Lens"):
        referenced_fields(path)
