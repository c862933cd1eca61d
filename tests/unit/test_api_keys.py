"""API keys: created once, configured as salted hashes, verified with a cache that never
remembers a refused key as good; the producer's start rule (issue #16)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pedidos.runtime.api_keys import (
    InvalidApiKeys,
    KeyVerifier,
    StoredKey,
    create_key,
    parse_keys,
)
from pedidos.runtime.config import ConfigError, load_settings
from producer.auth import InsecureStart, _bearer, interceptors, is_loopback


def test_a_created_key_verifies_only_against_its_own_line() -> None:
    key, line = create_key("tienda", ["orders:create"])
    other_key, other_line = create_key("soporte", ["orders:read"])
    assert key not in line  # only the hash is configured
    verifier = KeyVerifier(parse_keys(f"{line};{other_line}"))
    tienda = verifier.verify(key)
    assert tienda is not None
    assert (tienda.name, tienda.permissions) == ("tienda", {"orders:create"})
    soporte = verifier.verify(other_key)
    assert soporte is not None
    assert soporte.name == "soporte"
    assert verifier.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert verifier.verify("") is None
    assert verifier.verify("pdk_" + "x" * 500) is None


def test_two_keys_of_one_name_are_valid_at_once_for_a_rotation() -> None:
    old, old_line = create_key("tienda", ["orders:create"])
    new, new_line = create_key("tienda", ["orders:create"])
    verifier = KeyVerifier(parse_keys(f"{old_line}\n{new_line}"))
    assert verifier.verify(old) is not None
    assert verifier.verify(new) is not None
    assert KeyVerifier(parse_keys(new_line)).verify(old) is None


class CountingKey(StoredKey):
    calls = 0

    def matches(self, presented: bytes) -> bool:
        CountingKey.calls += 1
        return super().matches(presented)


def test_a_verified_key_is_not_hashed_again_and_a_refused_one_not_either() -> None:
    key, line = create_key("tienda", ["orders:create"])
    (stored,) = parse_keys(line)
    counting = CountingKey(stored.principal, stored.iterations, stored.salt, stored.digest)
    verifier = KeyVerifier([counting])
    wrong = create_key("x", ["orders:create"])[0]
    for _ in range(5):
        assert verifier.verify(key) is not None
        assert verifier.verify(wrong) is None
    assert CountingKey.calls == 2


def test_refused_keys_cannot_evict_the_good_ones() -> None:
    key, line = create_key("tienda", ["orders:create"])
    verifier = KeyVerifier(parse_keys(line), cache_size=2)
    assert verifier.verify(key) is not None
    for _ in range(5):
        verifier.verify(create_key("x", ["orders:create"])[0])
    assert verifier._known  # still remembered


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("tienda", "expected NAME:PERMISSIONS:HASH"),
        ("tienda:orders:create:sha1.1.00.00", "the hash is not"),
        ("tienda:orders:delete:pbkdf2-sha256.20000." + "00" * 16 + "." + "00" * 32, "unknown"),
        ("tienda:orders:create:pbkdf2-sha256.10." + "00" * 16 + "." + "00" * 32, "too small"),
    ],
)
def test_a_malformed_entry_is_one_line_naming_it(value: str, problem: str) -> None:
    with pytest.raises(InvalidApiKeys, match=problem):
        parse_keys(value)
    with pytest.raises(ConfigError, match="GRPC_API_KEYS: entry 1"):
        load_settings(grpc_api_keys=value)


def test_only_a_bearer_header_is_a_key() -> None:
    assert _bearer([("authorization", "Bearer pdk_abc")]) == "pdk_abc"
    assert _bearer([("authorization", "bearer  pdk_abc ")]) == "pdk_abc"
    assert _bearer([("authorization", "Basic abc")]) == ""
    assert _bearer([("x-other", "Bearer pdk_abc")]) is None
    assert _bearer(None) is None


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("[::1]:50051", True),
        ("localhost:50051", True),
        ("[::]:50051", False),
        ("0.0.0.0:50051", False),
        ("10.0.0.5:50051", False),
        ("producer:50051", False),
    ],
)
def test_loopback_addresses(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def test_the_producer_refuses_an_open_door_beyond_loopback_unless_told() -> None:
    with pytest.raises(InsecureStart, match="GRPC_AUTH=none"):
        interceptors(load_settings(grpc_listen="[::]:50051", grpc_api_keys=None))
    assert interceptors(load_settings(grpc_listen="[::]:50051", grpc_auth="none")) == []
    assert interceptors(load_settings(grpc_listen="127.0.0.1:50051", grpc_api_keys=None)) == []
    line = create_key("tienda", ["orders:create"])[1]
    assert len(interceptors(load_settings(grpc_listen="[::]:50051", grpc_api_keys=line))) == 1


def test_the_switch_instant_without_an_offset_is_utc() -> None:
    settings = load_settings(
        order_id_secret="n" * 32,
        order_id_previous_secret="o" * 32,
        order_id_secret_since="2026-12-01T12:00",
    )
    assert settings.order_id_secret_since is not None
    assert settings.order_id_secret_since.utcoffset() == timedelta(0)
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_settings(order_id_secret="corto")
    with pytest.raises(ConfigError, match="needs ORDER_ID_PREVIOUS_SECRET"):
        load_settings(order_id_secret="n" * 32, order_id_secret_since="2026-12-01T12:00Z")
