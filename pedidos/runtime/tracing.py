"""Traces (OpenTelemetry), configured only by the standard `OTEL_*` variables; off by default.

A process installs the SDK's tracer provider only when an exporter is asked for
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_TRACES_EXPORTER`)
and `OTEL_SDK_DISABLED` is not true. Otherwise the API's no-op tracer stays, and every hot path
asks `enabled()` first, so it builds no span, attribute or header at all: tracing off costs one
boolean test per record, e-mail and document (`make bench`, "tracing").

The sampler, service name, exporter endpoint and batching come from the SDK's own variables
(`OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_SERVICE_NAME`, `OTEL_BSP_*` …), read by the SDK itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context

if TYPE_CHECKING:  # the SDK is imported only when tracing is on
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

TRACER_NAME = "pedidos"
_EXPORTER_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
)

# The elasticsearch client's switch for its native OpenTelemetry spans.
ES_CLIENT_SPANS = "OTEL_PYTHON_INSTRUMENTATION_ELASTICSEARCH_ENABLED"

_enabled = False
_tracer: trace.Tracer = trace.NoOpTracer()


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces (see the module's docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in _EXPORTER_VARIABLES)


def adopt_dotenv(path: str = ".env", environ: MutableMapping[str, str] = os.environ) -> None:
    """The `OTEL_*` lines of `.env`, as for every other setting (the real environment wins).

    The SDK reads only `os.environ`, where pydantic-settings does not put what it reads."""
    if not os.path.exists(path):
        return
    from dotenv import dotenv_values

    for name, value in dotenv_values(path).items():
        if name.startswith("OTEL_") and value and name not in environ:
            environ[name] = value


def configure(component: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install the SDK for this process if the environment asks for it; True if it did.

    `component` is the service name unless `OTEL_SERVICE_NAME` says otherwise. The provider
    flushes its spans at exit (the SDK registers that itself)."""
    if environ is os.environ:
        adopt_dotenv()
    if not wanted(environ):
        # The elasticsearch client's own spans too (its standard switch, read per client):
        # otherwise it still opens a no-op span per request.
        os.environ.setdefault(ES_CLIENT_SPANS, "false")
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Explicit attributes win over OTEL_SERVICE_NAME in Resource.create: only name the
    # component when the variable does not.
    named = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"pedidos-{component}"}
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(_exporter(environ)))
    trace.set_tracer_provider(provider)
    install(provider.get_tracer(TRACER_NAME))
    log.info("tracing on", extra={"service": provider.resource.attributes.get(SERVICE_NAME)})
    return True


def _exporter(environ: Mapping[str, str]) -> SpanExporter:
    name = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported here; using otlp", name)
    if environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "grpc":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not installed; using http/protobuf")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def install(tracer: trace.Tracer) -> None:
    """Trace with `tracer` from now on (tests pass one of an in-memory provider)."""
    global _enabled, _tracer
    _tracer, _enabled = tracer, True


def uninstall() -> None:
    global _enabled, _tracer
    _tracer, _enabled = trace.NoOpTracer(), False


def enabled() -> bool:
    return _enabled


def tracer() -> trace.Tracer:
    return _tracer


def own_trace(name: str) -> AbstractContextManager[object]:
    """Around the intake of one order that came with others (a batch, a stream): a trace of its
    own, linked to the call's span, so that every order has one trace (sampled on its own)
    rather than a thousand orders sharing the call's."""
    return _own_trace(name) if _enabled else _NOTHING


@contextmanager
def _own_trace(name: str) -> Iterator[object]:
    call = trace.get_current_span().get_span_context()
    with _tracer.start_as_current_span(
        name, context=Context(), links=[trace.Link(call)] if call.is_valid else None
    ) as span:
        yield span


_NOTHING = nullcontext()


def current_trace_id() -> str | None:
    """The current trace's id (32 hex digits) if it is being recorded, else None: an id no
    backend will ever hold (not sampled) would only mislead whoever looks it up."""
    if not _enabled:
        return None
    context = trace.get_current_span().get_span_context()
    if not (context.is_valid and context.trace_flags.sampled):
        return None
    return trace.format_trace_id(context.trace_id)
