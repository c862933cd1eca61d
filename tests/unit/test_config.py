import subprocess
import sys

import pytest

from pedidos.runtime.config import ConfigError, load_settings


def test_defaults_match_the_documented_contract(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = load_settings()
    assert settings.pedidos_topic == "Pedidos"
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.grpc_listen == "[::]:50051"
    assert settings.smtp_starttls is False


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEDIDOS_TOPIC", "OtrosPedidos")
    monkeypatch.setenv("SMTP_STARTTLS", "true")
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("SMTP_USER", "user")
    settings = load_settings()
    assert settings.pedidos_topic == "OtrosPedidos"
    assert settings.smtp_starttls is True
    assert settings.smtp_password is not None
    assert "s3cret" not in repr(settings)  # secrets never end up in logs


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    (tmp_path / ".env").write_text("PRODUCER_ADDRESS=orders.internal:6000\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().producer_address == "orders.internal:6000"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SMTP_PORT", "abc", "SMTP_PORT='abc'"),
        ("SMTP_PORT", "70000", "SMTP_PORT='70000'"),
        ("SMTP_STARTTLS", "maybe", "SMTP_STARTTLS='maybe'"),
        ("STAGE_DELAY_MIN_S", "-1", "STAGE_DELAY_MIN_S"),
        ("KAFKA_TOPIC_PARTITIONS", "0", "KAFKA_TOPIC_PARTITIONS"),
    ],
)
def test_bad_values_give_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_inconsistent_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGE_DELAY_MIN_S", "3")
    monkeypatch.setenv("STAGE_DELAY_MAX_S", "1")
    with pytest.raises(ConfigError, match="STAGE_DELAY_MAX_S must be >= STAGE_DELAY_MIN_S"):
        load_settings()
    monkeypatch.delenv("STAGE_DELAY_MIN_S")
    monkeypatch.delenv("STAGE_DELAY_MAX_S")
    monkeypatch.setenv("SMTP_USER", "only-user")
    with pytest.raises(ConfigError, match="set together"):
        load_settings()


@pytest.mark.parametrize("module", ["producer", "consumer", "admin"])
def test_entrypoints_print_one_line_and_exit_2_on_bad_config(module: str) -> None:
    args = [sys.executable, "-m", module] + (["topics"] if module == "admin" else [])
    result = subprocess.run(
        args,
        env={"SMTP_PORT": "not-a-port", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "SMTP_PORT='not-a-port'" in result.stderr
    assert "Traceback" not in result.stderr
