"""A minimal OTLP/HTTP trace receiver (protobuf on `POST /v1/traces`), for the tests, the demo
and the bench: the services export to it as to a collector, and it keeps every span in memory
to be grouped into traces. Not a collector: no gzip unless the exporter sends it, no JSON."""

from __future__ import annotations

import gzip
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

# OTLP's span kinds, by their number in the protocol.
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    links: list[tuple[str, str]]  # (trace id, span id)
    error: bool

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _spans(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    found = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(
                    ReceivedSpan(
                        service=service,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=KINDS.get(span.kind, str(span.kind)),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                        error=span.status.code == 2,
                    )
                )
    return found


@dataclass
class OtlpReceiver:
    """`with OtlpReceiver() as receiver:` listens on 127.0.0.1; point `OTEL_EXPORTER_OTLP_ENDPOINT`
    at `receiver.endpoint`."""

    port: int = 0
    # False: only count requests and bytes (the bench, whose own CPU must stay small).
    keep: bool = True
    received: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    bytes: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver._add(
                    _spans(ExportTraceServiceRequest.FromString(body)) if receiver.keep else [],
                    len(body),
                )
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per export batch is noise

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(
        self, sampler: str = "always_on", ratio: float | None = None, prompt: bool = True
    ) -> dict[str, str]:
        """The variables that make a service export here: soon after each span ends, or with
        `prompt` False in the SDK's default batches (as in production: the bench's cost)."""
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint, "OTEL_TRACES_SAMPLER": sampler}
        if prompt:
            env["OTEL_BSP_SCHEDULE_DELAY"] = "100"
        if ratio is not None:
            env["OTEL_TRACES_SAMPLER_ARG"] = str(ratio)
        return env

    def _add(self, spans: list[ReceivedSpan], size: int) -> None:
        with self._lock:
            self.received.extend(spans)
            self.requests += 1
            self.bytes += size

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.received)

    def traces(self) -> dict[str, list[ReceivedSpan]]:
        """Every span received, by trace id, each trace's spans in start order."""
        grouped: dict[str, list[ReceivedSpan]] = defaultdict(list)
        for span in sorted(self.spans(), key=lambda s: s.start_ns):
            grouped[span.trace_id].append(span)
        return dict(grouped)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def timeline(spans: list[ReceivedSpan]) -> list[str]:
    """One trace as indented lines: offset from its start, duration, service, name."""
    if not spans:
        return []
    start = min(s.start_ns for s in spans)
    by_parent: dict[str | None, list[ReceivedSpan]] = defaultdict(list)
    ids = {s.span_id for s in spans}
    for span in sorted(spans, key=lambda s: s.start_ns):
        by_parent[span.parent_id if span.parent_id in ids else None].append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in by_parent.get(parent, []):
            state = span.attributes.get("pedidos.order.state")
            label = f"{span.name} [{state}]" if state else span.name
            lines.append(
                f"{(span.start_ns - start) / 1e6:9.1f} ms {span.duration_ms:8.1f} ms  "
                f"{'  ' * depth}{label}  ({span.service}, {span.kind.lower()})"
            )
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return lines
