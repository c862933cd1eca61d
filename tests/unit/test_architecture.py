"""The layout is the architecture: no module imports a layer above it, the layers under the
adapters import no I/O library, and no modules import each other in a cycle.

A small AST check (every `import`, also inside functions), so it runs in milliseconds; the
self-tests at the end prove it reports what it should.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = ("pedidos", "producer", "consumer", "client", "admin", "devkit", "bench")

# Lowest first: a module may import its own layer and the ones below, never one above.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("domain", ("pedidos.domain",)),
    ("wire, ports, runtime", ("pedidos.wire", "pedidos.ports", "pedidos.runtime", "pedidos.v1")),
    ("services", ("pedidos.services",)),
    ("adapters", ("pedidos.adapters",)),
    ("bootstrap", ("pedidos.bootstrap",)),
    ("entrypoints", ("producer", "consumer", "client", "admin")),
    ("tools", ("devkit", "bench")),
)
ENTRYPOINTS = ("producer", "consumer", "client", "admin")
# `python -m admin stack|demo` is the devkit's command line.
ALLOWED_UPWARD = frozenset({("admin", "devkit")})
# Only adapters talk to the outside world; runtime may use grpc (TLS credentials).
IO_LIBRARIES = (
    "grpc",
    "confluent_kafka",
    "smtplib",
    "elasticsearch",
    "elastic_transport",
    "jinja2",
    # Tracing, even its API: spans are made at the edges (adapters, entrypoints) and the trace
    # context reaches them through contextvars, so the use cases stay testable without it.
    "opentelemetry",
)
IO_FREE = ("pedidos.domain", "pedidos.ports", "pedidos.wire", "pedidos.services")
# The SDK and its exporters (threads, sockets, global state) are set up in one module; the rest
# of the code uses only the API, a no-op until that module installs a provider.
TRACING_SDK = ("opentelemetry.sdk", "opentelemetry.exporter")
TRACING_SETUP = "pedidos.runtime.tracing"


@dataclass(frozen=True, slots=True)
class Import:
    module: str
    target: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module} imports {self.target}"


def _module_names(root: Path) -> dict[str, Path]:
    modules = {}
    for package in FIRST_PARTY:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports(root: Path = ROOT) -> list[Import]:
    """Every import statement of the first-party modules under `root`, resolved."""
    modules = _module_names(root)
    found = []
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, package, modules):
                    found.append(Import(module, target, path.relative_to(root), node.lineno))
    return found


def _targets(
    node: ast.Import | ast.ImportFrom, package: str, modules: dict[str, Path]
) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    else:
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            yield submodule if submodule in modules else base


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(_within(module, prefix) for prefix in prefixes):
            return rank
    return None


def upward_imports(found: list[Import]) -> list[tuple[Import, str]]:
    """The imports that break the layering, each with why."""
    problems = []
    for imp in found:
        own, other = layer_of(imp.module), layer_of(imp.target)
        if own is None or other is None:
            continue
        packages = (imp.module.split(".")[0], imp.target.split(".")[0])
        if packages in ALLOWED_UPWARD:
            continue
        if other > own:
            problems.append((imp, f"{LAYERS[own][0]} importing {LAYERS[other][0]}"))
        elif packages[0] != packages[1] and set(packages) <= set(ENTRYPOINTS):
            problems.append((imp, "one entrypoint importing another"))
    return problems


def io_imports(found: list[Import]) -> list[Import]:
    return [
        imp
        for imp in found
        if any(_within(imp.module, layer) for layer in IO_FREE)
        and imp.target.split(".")[0] in IO_LIBRARIES
    ]


def tracing_sdk_imports(found: list[Import]) -> list[Import]:
    """Imports of the tracing SDK outside its setup module (tests and tools may use it)."""
    return [
        imp
        for imp in found
        if any(_within(imp.target, sdk) for sdk in TRACING_SDK)
        and imp.module != TRACING_SETUP
        and imp.module.split(".")[0] not in ("devkit", "bench")
    ]


def cycles(found: list[Import]) -> list[list[str]]:
    """The groups of first-party modules that import one another, each sorted."""
    graph: dict[str, set[str]] = {}
    for imp in found:
        if imp.target.split(".")[0] in FIRST_PARTY and imp.target != imp.module:
            graph.setdefault(imp.module, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {
        tuple(sorted(other for other in reach[node] if node in reach[other]))
        for node in graph
        if node in reach[node]
    }
    return [list(group) for group in sorted(groups)]


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for successor in graph[todo.pop()] - seen:
            seen.add(successor)
            todo.append(successor)
    return seen


# -- the tree as it is ---------------------------------------------------------------------------


def test_every_first_party_package_is_placed_in_a_layer() -> None:
    unplaced = {m for m in _module_names(ROOT) if layer_of(m) is None and "." in m}
    assert not unplaced, f"modules in no layer (add them to LAYERS): {sorted(unplaced)}"


def test_no_module_imports_a_layer_above_it() -> None:
    problems = upward_imports(imports())
    assert not problems, "\n".join(f"{imp} ({why})" for imp, why in problems)


def test_the_layers_under_the_adapters_import_no_io_library() -> None:
    problems = io_imports(imports())
    assert not problems, "\n".join(map(str, problems))


def test_only_the_tracing_setup_imports_the_tracing_sdk() -> None:
    problems = tracing_sdk_imports(imports())
    assert not problems, "\n".join(map(str, problems))


def test_no_import_cycles() -> None:
    found = cycles(imports())
    assert not found, "\n".join(" <-> ".join(group) for group in found)


# -- the check itself ----------------------------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for package in FIRST_PARTY:
        (root / package).mkdir(exist_ok=True)
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


def test_the_check_reports_upward_imports_io_libraries_and_cycles(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "pedidos/__init__.py": "",
            "pedidos/domain/__init__.py": "",
            "pedidos/domain/order.py": (
                "import grpc\n"
                "def late():\n"
                "    from pedidos.adapters.kafka import publisher\n"
                "from . import states\n"
            ),
            "pedidos/domain/states.py": "from pedidos.domain.order import Order\n",
            "pedidos/services/__init__.py": "",
            "pedidos/services/intake.py": (
                "from elasticsearch import AsyncElasticsearch\nfrom opentelemetry import trace\n"
            ),
            "pedidos/runtime/__init__.py": "",
            "pedidos/runtime/tracing.py": "from opentelemetry.sdk.trace import TracerProvider\n",
            "pedidos/runtime/retry.py": "import opentelemetry.exporter.otlp\n",
            "pedidos/adapters/__init__.py": "",
            "pedidos/adapters/kafka/__init__.py": "",
            "pedidos/adapters/kafka/publisher.py": "import confluent_kafka\nimport pedidos.ports\n",
            "pedidos/ports.py": "import pedidos.domain\n",
            "consumer/app.py": "from producer.server import serve\nfrom pedidos import bootstrap\n",
            "producer/server.py": "from devkit import stack\n",
            "admin/__main__.py": "from devkit.stack import EmbeddedStack\n",
        },
    )
    found = imports(root)
    assert {(imp.module, imp.target) for imp, _ in upward_imports(found)} == {
        ("pedidos.domain.order", "pedidos.adapters.kafka.publisher"),  # inside a function too
        ("consumer.app", "producer.server"),
        ("producer.server", "devkit"),
    }
    assert {(imp.module, imp.target) for imp in io_imports(found)} == {
        ("pedidos.domain.order", "grpc"),
        ("pedidos.services.intake", "elasticsearch"),
        ("pedidos.services.intake", "opentelemetry"),
    }  # the adapter's confluent_kafka is fine
    assert {(imp.module, imp.target) for imp in tracing_sdk_imports(found)} == {
        ("pedidos.runtime.retry", "opentelemetry.exporter.otlp"),
    }  # pedidos.runtime.tracing may
    assert cycles(found) == [["pedidos.domain.order", "pedidos.domain.states"]]
