"""Configuration, read once from the environment and `.env`; a bad value is one clear line."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pedidos.runtime.api_keys import InvalidApiKeys, parse_keys, parse_permissions

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(ge=0)]


class ConfigError(Exception):
    """Raised with a single human-readable line naming the bad variable."""


class Settings(BaseSettings):
    """Every knob of every component; each field is the upper-cased environment variable."""

    # An empty variable means its default, as in .env.example (and compose's `${X:-default}`).
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,
    )

    # Kafka
    kafka_bootstrap_servers: str = "localhost:9092"
    pedidos_topic: str = "Pedidos"
    pedidos_states_topic: str = "Pedidos.estados"
    pedidos_dead_letter_topic: str = "Pedidos.dlq"
    kafka_topic_partitions: Annotated[int, Field(ge=1, le=1000)] = 6
    kafka_replication_factor: Annotated[int, Field(ge=1, le=10)] = 1
    kafka_consumer_group: str = "pedidos-consumer"
    # Tansu takes about half of this to admit a member to a group; Kafka's default is 45 s.
    kafka_session_timeout_ms: Annotated[int, Field(ge=1000)] = 10_000

    # Elasticsearch
    elasticsearch_url: str = "http://localhost:9200"
    elasticsearch_api_key: SecretStr | None = None
    elasticsearch_username: str | None = None
    elasticsearch_password: SecretStr | None = None
    elasticsearch_events_index: str = "pedidos-order-events"
    elasticsearch_orders_index: str = "pedidos-orders"

    # SMTP
    smtp_host: str = "localhost"
    smtp_port: Port = 1025
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_from: str = "Pedidos <pedidos@example.com>"
    # A CA bundle for servers with a private CA; the system's trust store otherwise.
    smtp_ca_file: str | None = None
    smtp_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    # Half the default send slots (CONSUMER_MAX_UNRECORDED_EMAILS): at most two e-mails queue
    # per connection, so a slot waits less for its send (see the README, "Sizing the slots").
    smtp_connections: Annotated[int, Field(ge=1, le=64)] = 16

    # gRPC
    grpc_listen: str = "[::]:50051"
    producer_address: str = "localhost:50051"
    grpc_deadline_s: Annotated[float, Field(gt=0)] = 10.0
    grpc_max_message_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    # TLS: the producer serves it with a certificate and key; the client trusts this CA.
    grpc_tls_cert: str | None = None
    grpc_tls_key: str | None = None
    grpc_tls_ca: str | None = None
    # Authentication (README, "Security"): `none` turns it off explicitly; otherwise API keys
    # (`NAME:PERMISSIONS:HASH` lines from `python -m admin api-key create`) and/or client
    # certificates signed by GRPC_TLS_CLIENT_CA, mapped to permissions by subject (JSON object).
    grpc_auth: Literal["auto", "none"] = "auto"
    grpc_api_keys: str | None = None
    grpc_tls_client_ca: str | None = None
    grpc_tls_client_permissions: dict[str, list[str]] = Field(default_factory=dict)
    grpc_reflection: bool = True
    # The client's key (sent as `authorization: Bearer <key>`) and, for mutual TLS, its
    # certificate and key.
    producer_api_key: SecretStr | None = None
    grpc_tls_client_cert: str | None = None
    grpc_tls_client_key: str | None = None
    # Keyed order ids (HMAC-SHA256), shared by every producer replica; rotation: the previous
    # secret keeps deriving ids until ORDER_ID_SECRET_SINCE (README, "Security").
    order_id_secret: SecretStr | None = None
    order_id_previous_secret: SecretStr | None = None
    order_id_secret_since: datetime | None = None

    # The consumer's simulated work per state, drawn uniformly from [min, max].
    stage_delay_min_s: Seconds = 0.5
    stage_delay_max_s: Seconds = 2.0
    consumer_max_in_flight: Annotated[int, Field(ge=1)] = 5000
    # Orders started but not finished per process; past it new orders wait (see README).
    consumer_max_open_orders: Annotated[int, Field(ge=1)] = 2000
    # Keys one producer process remembers (~0.9 KB each) to answer retries from the first publish.
    producer_idempotency_keys: Annotated[int, Field(ge=1)] = 20_000
    # Processes per service (one core each); see pedidos/runtime/supervisor.py.
    producer_workers: Annotated[int, Field(ge=1, le=64)] = 1
    consumer_workers: Annotated[int, Field(ge=1, le=64)] = 1
    # E-mails accepted by SMTP but not yet in the ledger: the most one crash can repeat.
    consumer_max_unrecorded_emails: Annotated[int, Field(ge=1)] = 32
    # A fetch waits on the broker until this many bytes are there or the wait is over (README,
    # "Fetch batching"): 1 answers at the first record; more trades latency for fewer requests.
    consumer_fetch_min_bytes: Annotated[int, Field(ge=1, le=16 * 1024 * 1024)] = 1
    consumer_fetch_max_wait_ms: Annotated[int, Field(ge=1, le=10_000)] = 500

    # /metrics, /healthz and /readyz of the producer and the consumer; off when unset. Worker N
    # of PRODUCER_WORKERS / CONSUMER_WORKERS > 1 serves on METRICS_PORT + N.
    metrics_port: Port | None = None
    metrics_host: str = "0.0.0.0"
    # Retention (admin): Kafka `retention.ms` of the Pedidos* topics, days an ES document is
    # kept (an ILM delete phase where the cluster has ILM). Unset: the server's defaults.
    pedidos_retention_ms: Annotated[int, Field(ge=60_000)] | None = None
    elasticsearch_retention_days: Annotated[int, Field(ge=1)] | None = None

    # Kibana (admin only)
    kibana_url: str | None = None

    log_level: str = "INFO"

    @model_validator(mode="after")
    def _check_ranges(self) -> Settings:
        if self.stage_delay_max_s < self.stage_delay_min_s:
            raise ValueError("STAGE_DELAY_MAX_S must be >= STAGE_DELAY_MIN_S")
        if self.smtp_starttls and self.smtp_ssl:
            raise ValueError("SMTP_STARTTLS and SMTP_SSL are mutually exclusive")
        if bool(self.smtp_user) != bool(self.smtp_password):
            raise ValueError("SMTP_USER and SMTP_PASSWORD must be set together")
        if bool(self.grpc_tls_cert) != bool(self.grpc_tls_key):
            raise ValueError("GRPC_TLS_CERT and GRPC_TLS_KEY must be set together")
        return self

    @field_validator("order_id_secret_since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # An instant without an offset is UTC, as everywhere in this project.
        return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value

    @model_validator(mode="after")
    def _check_auth(self) -> Settings:
        if bool(self.grpc_tls_client_cert) != bool(self.grpc_tls_client_key):
            raise ValueError("GRPC_TLS_CLIENT_CERT and GRPC_TLS_CLIENT_KEY must be set together")
        if self.grpc_tls_client_ca and not self.grpc_tls_cert:
            raise ValueError("GRPC_TLS_CLIENT_CA needs GRPC_TLS_CERT and GRPC_TLS_KEY")
        if self.order_id_secret_since and not self.order_id_previous_secret:
            raise ValueError("ORDER_ID_SECRET_SINCE needs ORDER_ID_PREVIOUS_SECRET")
        for secret in (self.order_id_secret, self.order_id_previous_secret):
            if secret is not None and len(secret.get_secret_value()) < 32:
                raise ValueError("ORDER_ID_SECRET: at least 32 characters (openssl rand -hex 32)")
        try:
            parse_keys(self.grpc_api_keys)
        except InvalidApiKeys as exc:
            raise ValueError(f"GRPC_API_KEYS: {exc}") from None
        for subject, permissions in self.grpc_tls_client_permissions.items():
            try:
                parse_permissions(permissions)
            except InvalidApiKeys as exc:
                raise ValueError(f"GRPC_TLS_CLIENT_PERMISSIONS[{subject!r}]: {exc}") from None
        return self


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and `.env`); raise ConfigError with one line on a bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = "_".join(str(part) for part in error["loc"]).upper()
            value = error.get("input")
            shown = "" if not where or isinstance(value, dict) else f"={value!r}"
            label = f"{where}{shown}: " if where else ""
            problems.append(f"{label}{error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def settings_or_exit(component: str) -> Settings:
    """The settings of a command-line entrypoint: a bad value is one line and exit code 2."""
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"{component}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
