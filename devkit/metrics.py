"""Reading a service's `/metrics` back: the tests' and the demo's one scraper."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from devkit.net import http_get

# (sample name, its labels) -> value
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of the `/metrics` on a loopback port; empty if it does not answer 200."""
    try:
        status, text = http_get(port, "/metrics")
    except OSError:
        return {}
    if status != 200:
        return {}
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)
