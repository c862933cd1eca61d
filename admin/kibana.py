"""Kibana saved objects: import the dashboards' .ndjson, and list the fields its charts use."""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from pedidos.runtime.retry import Backoff, retry_blocking

# Lens names the reference of each layer's data view after the layer id.
_LAYER_REFERENCE_PREFIX = "indexpattern-datasource-layer-"
# Lens' pseudo-field for "count of records"; not a field of any index.
_RECORDS = "___records___"
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_KQL_FIELD = re.compile(r"(?<![\w.@-])([@\w][\w.@-]*)\s*:")
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 5.0
# The import gets its own budget: `timeout_s` bounds only the wait for Kibana to come up.
_IMPORT_TIMEOUT_S = 60.0
# Each wait is one line of the final error, not a warning per poll while Kibana boots.
_quiet = logging.getLogger("admin.kibana.wait")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


class KibanaError(RuntimeError):
    """Kibana never became available, or refused part of the import."""


def import_saved_objects(kibana_url: str, ndjson: Path, timeout_s: float = 120) -> dict[str, Any]:
    """Wait for Kibana to be available, then import `ndjson` overwriting same-id objects.

    Returns Kibana's answer (`successCount`, `successResults`, ...); raises KibanaError if Kibana
    is not available within `timeout_s` or the answer says `success: false`.
    """
    base = kibana_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise KibanaError(f"KIBANA_URL must start with http:// or https://, got {kibana_url!r}")
    _wait_until_available(base, time.monotonic() + timeout_s, timeout_s)
    body, content_type = _multipart_file(ndjson)
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        f"{base}/api/saved_objects/_import?overwrite=true",
        data=body,
        method="POST",
        headers={"kbn-xsrf": "true", "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=_IMPORT_TIMEOUT_S) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:500]
        raise KibanaError(
            f"Kibana refused the import of {ndjson.name}: {exc.code} {detail}"
        ) from None
    except (urllib.error.URLError, TimeoutError) as exc:
        raise KibanaError(f"importing {ndjson.name} into {base} failed: {exc}") from None
    if not answer.get("success", False):
        raise KibanaError(f"Kibana rejected part of {ndjson.name}: {_describe_errors(answer)}")
    return answer


def referenced_fields(ndjson: Path) -> dict[str, set[str]]:
    """Per data-view title, every field the file's visualizations read (and its time field)."""
    objects = [json.loads(line) for line in ndjson.read_text("utf-8").splitlines() if line.strip()]
    titles: dict[str, str] = {}
    fields: dict[str, set[str]] = {}
    for obj in objects:
        if obj["type"] == "index-pattern":
            title = obj["attributes"]["title"]
            titles[obj["id"]] = title
            fields[title] = {obj["attributes"]["timeFieldName"]}
    for obj in objects:
        if obj["type"] in ("visualization", "search"):
            # Only Lens is parsed; a legacy chart here would pass the mapping test unchecked.
            raise ValueError(f"{obj['id']}: {obj['type']} objects are not supported, use Lens")
        if obj["type"] != "lens":
            continue
        state = obj["attributes"]["state"]
        shared = _kql_fields(state.get("query", {})) | _filter_fields(state.get("filters", []))
        layers = state["datasourceStates"]["formBased"]["layers"]
        for layer_id, layer in layers.items():
            view_id = _layer_data_view(obj, layer_id)
            if view_id not in titles:
                raise ValueError(f"{obj['id']}: layer {layer_id} uses unknown data view {view_id}")
            used = fields[titles[view_id]]
            used |= shared
            for column in layer["columns"].values():
                used |= _column_fields(column)
    return fields


class _NotReady(Exception):
    """Kibana answered, but cannot import saved objects yet (or did not answer)."""


def _wait_until_available(base: str, deadline: float, timeout_s: float) -> None:
    """Until Kibana's saved objects service is available.

    Not the overall level: Kibana can sit at `degraded` for a long time because of a plugin
    that has nothing to do with saved objects, and the import works all the same."""

    def ready() -> None:
        try:
            with urllib.request.urlopen(  # noqa: S310 - scheme checked by the caller
                f"{base}/api/status", timeout=_remaining(deadline, 10.0)
            ) as response:
                level = _saved_objects_level(response.read())
        except urllib.error.HTTPError as exc:
            # While starting, Kibana answers 503 with the same JSON body.
            raise _NotReady(
                f"HTTP {exc.code} (status {_saved_objects_level(exc.read())})"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _NotReady(str(getattr(exc, "reason", exc))) from None
        if level != "available":
            raise _NotReady(f"status {level}")

    try:
        retry_blocking(
            f"waiting for Kibana at {base}",
            ready,
            retry_on=(_NotReady,),
            backoff=Backoff(initial_s=_FIRST_BACKOFF_S, max_s=_MAX_BACKOFF_S),
            within_s=max(0.0, deadline - time.monotonic()),
            logger=_quiet,
        )
    except _NotReady as exc:
        raise KibanaError(
            f"Kibana at {base} was not available within {timeout_s:g} s (last: {exc})"
        ) from None


def _saved_objects_level(body: bytes) -> str:
    """The level of the saved objects service, or the overall one if the answer lacks it."""
    try:
        status = json.loads(body)["status"]
    except (ValueError, KeyError, TypeError):
        return "unknown"
    for path in (("core", "savedObjects", "level"), ("overall", "level")):
        node: Any = status
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str):
            return node
    return "unknown"


def _remaining(deadline: float, cap: float) -> float:
    return max(0.1, min(cap, deadline - time.monotonic()))


def _multipart_file(path: Path) -> tuple[bytes, str]:
    boundary = f"pedidos-{uuid.uuid4().hex}"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + path.read_bytes() + tail, f"multipart/form-data; boundary={boundary}"


def _describe_errors(answer: dict[str, Any]) -> str:
    errors = answer.get("errors") or []
    if not errors:
        return json.dumps(answer)[:500]
    return "; ".join(
        f"{e.get('type')}/{e.get('id')}: {(e.get('error') or {}).get('type', 'error')}"
        for e in errors
    )


def _layer_data_view(obj: dict[str, Any], layer_id: str) -> str | None:
    name = _LAYER_REFERENCE_PREFIX + layer_id
    for reference in obj.get("references", []):
        if reference["name"] == name:
            return str(reference["id"])
    return None


def _column_fields(column: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    source = column.get("sourceField")
    if source and source != _RECORDS:
        found.add(source)
    order_agg = column.get("params", {}).get("orderAgg")
    if order_agg:
        found |= _column_fields(order_agg)
    if "filter" in column:
        found |= _kql_fields(column["filter"])
    return found


def _kql_fields(query: dict[str, Any]) -> set[str]:
    text = query.get("query", "")
    if not isinstance(text, str):
        return set()
    return set(_KQL_FIELD.findall(_QUOTED.sub('""', text)))


def _filter_fields(filters: list[dict[str, Any]]) -> set[str]:
    return {f["meta"]["key"] for f in filters if f.get("meta", {}).get("key")}
