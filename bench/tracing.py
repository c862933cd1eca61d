"""Issue #14: what tracing costs. The consumer's CPU per order (5 states, stage delays 0,
discard sink) with tracing off, on with every order sampled, and on with one in ten, beside
each other; each an end-to-end run of bench/pipeline.py on its own topics, the producer's CPU
per order in the notes. The services export to an OTLP receiver in the bench process that only
counts what arrives (decoding it would load the machine being measured)."""

from __future__ import annotations

from collections.abc import Mapping

from bench.figures import Figure
from bench.pipeline import PipelineRun
from bench.resources import cpu_ms_per_unit
from devkit.otlp_receiver import OtlpReceiver

SCENARIO = "9 Tracing (#14)"
# key, label, sampling ratio (None: tracing off).
VARIANTS: tuple[tuple[str, str, str | None], ...] = (
    ("off", "tracing off", None),
    ("on100", "tracing on, 100 % sampled", "1.0"),
    ("on10", "tracing on, 10 % sampled", "0.1"),
)


def variant_env(receiver: OtlpReceiver, ratio: str | None) -> dict[str, str]:
    """The services' tracing settings: nothing at all when off (the default)."""
    if ratio is None:
        return {}
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        # Sampled at the root (the producer's server span); the consumer follows the
        # traceparent's decision, so an order is traced whole or not at all.
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio,
    }


def fill(figure: Figure, run: PipelineRun, exported_bytes: int) -> None:
    """The consumer's CPU per order as the value; the producer's and the rate in the notes."""
    consumer = cpu_ms_per_unit(run.cpu, "consumer", run.orders)
    producer = cpu_ms_per_unit(run.cpu, "producer", run.orders)
    rate = run.orders / run.elapsed_s if run.elapsed_s else None
    figure.value = consumer
    if run.cpu is not None:
        figure.foreign_cores = run.cpu.other
    figure.details = {
        "orders": run.orders,
        "consumer_cpu_ms_per_order": None if consumer is None else round(consumer, 3),
        "producer_cpu_ms_per_order": None if producer is None else round(producer, 3),
        "orders_per_s": None if rate is None else round(rate, 1),
        "exported_bytes": exported_bytes,
        "cpu": run.cpu.to_json() if run.cpu else None,
    }
    shown = [f"{run.orders:,} orders"]
    if rate is not None:
        shown.append(f"{rate:,.0f} orders/s")
    if producer is not None:
        shown.append(f"producer {producer:.3f} ms/order")
    shown.append(f"{exported_bytes / max(run.orders, 1):,.0f} bytes of spans exported per order")
    figure.notes.append("; ".join(shown))
    figure.refuse(run.problems)


def compare(figures: Mapping[str, Figure]) -> None:
    """Each 'on' figure beside the 'off' one of the same run: the ratio column is the cost."""
    off = figures.get("tracing.off")
    for key, _, ratio in VARIANTS:
        figure = figures.get(f"tracing.{key}")
        if ratio is None or figure is None or off is None or off.value is None:
            continue
        figure.limit = off.value
        figure.limit_label = "tracing off, ms"
