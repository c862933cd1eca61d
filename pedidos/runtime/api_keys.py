"""API keys for the gRPC API: created once, configured only as salted hashes, checked in
constant time.

A configured key is one line `NAME:PERMISSIONS:HASH`, e.g.
`client:orders:create,orders:read:pbkdf2-sha256.20000.<salt hex>.<digest hex>`
(`python -m admin api-key create` prints it). Several lines (`;` or newlines between them) are
valid at once, which is how a key is rotated: add the new one, move callers, remove the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

ORDERS_CREATE = "orders:create"
ORDERS_READ = "orders:read"
PERMISSIONS = frozenset({ORDERS_CREATE, ORDERS_READ})

KEY_PREFIX = "pdk_"
_SCHEME = "pbkdf2-sha256"
# The keys are 256 random bits, so no work factor is what protects them: the salted hash keeps
# a leaked configuration from being a credential. Kept low so that unknown keys (each one costs
# a hash per configured key) cannot be used to burn the producer's CPU.
_ITERATIONS = 20_000
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PRESENTED = re.compile(r"^pdk_[A-Za-z0-9_-]{32,128}$")
_CACHE_SIZE = 256

V = TypeVar("V")


class InvalidApiKeys(ValueError):
    """A GRPC_API_KEYS entry is malformed; the message names the entry's position and name."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called: a key's or a client certificate's name, and what it may do."""

    name: str
    permissions: frozenset[str]


@dataclass(frozen=True, slots=True)
class StoredKey:
    principal: Principal
    iterations: int
    salt: bytes
    digest: bytes

    def matches(self, presented: bytes) -> bool:
        derived = hashlib.pbkdf2_hmac("sha256", presented, self.salt, self.iterations)
        return hmac.compare_digest(derived, self.digest)


def parse_permissions(text: str | Iterable[str]) -> frozenset[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    permissions = frozenset(item.strip() for item in items if item.strip())
    unknown = permissions - PERMISSIONS
    if unknown:
        raise InvalidApiKeys(
            f"unknown permission {sorted(unknown)[0]!r} (known: {', '.join(sorted(PERMISSIONS))})"
        )
    return permissions


def parse_keys(text: str | None) -> tuple[StoredKey, ...]:
    """The GRPC_API_KEYS value as stored keys; InvalidApiKeys on a malformed entry."""
    entries = [e.strip() for e in re.split(r"[;\n]", text or "") if e.strip()]
    return tuple(_parse_entry(position, entry) for position, entry in enumerate(entries, 1))


def _parse_entry(position: int, entry: str) -> StoredKey:
    name, _, rest = entry.partition(":")
    permissions, _, hashed = rest.rpartition(":")
    if not _NAME.match(name) or not hashed:
        raise InvalidApiKeys(f"entry {position}: expected NAME:PERMISSIONS:HASH")
    try:
        scheme, iterations, salt, digest = hashed.split(".")
        if scheme != _SCHEME:
            raise ValueError
        stored = StoredKey(
            Principal(name, parse_permissions(permissions)),
            int(iterations),
            bytes.fromhex(salt),
            bytes.fromhex(digest),
        )
    except InvalidApiKeys as exc:
        raise InvalidApiKeys(f"entry {position} ({name}): {exc}") from None
    except ValueError:
        raise InvalidApiKeys(
            f"entry {position} ({name}): the hash is not {_SCHEME}.ITERATIONS.SALT.DIGEST"
        ) from None
    if len(stored.digest) != 32 or len(stored.salt) < 16 or stored.iterations < 1000:
        raise InvalidApiKeys(f"entry {position} ({name}): salt, digest or iterations too small")
    return stored


def create_key(name: str, permissions: Iterable[str]) -> tuple[str, str]:
    """A new random key and its configuration line (`NAME:PERMISSIONS:HASH`)."""
    if not _NAME.match(name):
        raise InvalidApiKeys("the name must be 1-64 letters, digits, '.', '_' or '-'")
    granted = parse_permissions(permissions)
    if not granted:
        raise InvalidApiKeys("at least one permission is needed")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", key.encode(), salt, _ITERATIONS)
    line = f"{name}:{','.join(sorted(granted))}:{_SCHEME}.{_ITERATIONS}.{salt.hex()}.{digest.hex()}"
    return key, line


class KeyVerifier:
    """Finds the principal of a presented key.

    A full check hashes the key with every stored salt (compared with `hmac.compare_digest`,
    and every stored key is tried, so the time does not say which one matched). Its result is
    remembered under the SHA-256 of the presented key, in a small LRU: that cache holds no
    secret (SHA-256 cannot be reversed into a key), is filled only by a full check, and lives
    as long as the process, which is also how long the configured keys do. Refused keys are
    remembered apart, so a flood of wrong keys cannot evict the good ones."""

    def __init__(self, keys: Iterable[StoredKey], cache_size: int = _CACHE_SIZE) -> None:
        self._keys = tuple(keys)
        self._cache_size = cache_size
        self._known: OrderedDict[bytes, Principal] = OrderedDict()
        self._refused: OrderedDict[bytes, None] = OrderedDict()

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def verify(self, presented: str) -> Principal | None:
        if not _PRESENTED.match(presented):
            return None  # not one of our keys' shape: no hashing at all
        raw = presented.encode()
        fingerprint = hashlib.sha256(raw).digest()
        principal = self._known.get(fingerprint)
        if principal is not None:
            self._known.move_to_end(fingerprint)
            return principal
        if fingerprint in self._refused:
            return None
        matched = [key.principal for key in self._keys if key.matches(raw)]
        if not matched:
            self._remember(self._refused, fingerprint, None)
            return None
        self._remember(self._known, fingerprint, matched[0])
        return matched[0]

    def _remember(self, cache: OrderedDict[bytes, V], key: bytes, value: V) -> None:
        cache[key] = value
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
