"""The order id derived from (customer, idempotency key) is part of the contract, and a secret.

Producer replicas, restarts and every release must turn the same retried request into the same
order id under the same ORDER_ID_SECRET, or a retry becomes a second order; so the derivation
is pinned to a literal here. Without the secret, nobody can compute it (issue #16): the
public uuid5 derivation of earlier releases no longer gives it, nor does another secret.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from pedidos.domain.order import new_order_id
from pedidos.services.intake import OrderIdSecrets

SECRET = b"0123456789abcdef0123456789abcdef"  # pragma: allowlist secret
# The namespace of releases before #16, public in their source.
OLD_NAMESPACE = uuid.UUID("6f1c7b1e-3c1a-4f7e-9a55-0d6a3c2b9e41")


def test_the_id_of_a_customer_and_key_never_changes_between_releases() -> None:
    assert new_order_id("comprador@example.cl", "pedido-42", SECRET) == (
        "b587bf9d-2da4-8850-8823-a41ed8ee64ff"
    )


def test_the_id_cannot_be_computed_from_the_email_and_key_alone() -> None:
    email, key = "comprador@example.cl", "pedido-42"
    keyed = new_order_id(email, key, SECRET)
    name = f"{email}\x00{key}"
    guesses = {
        str(uuid.uuid5(OLD_NAMESPACE, name)),
        new_order_id(email, key, b""),
        new_order_id(email, key, b"1" * 32),
        new_order_id(email, key, hashlib.sha256(name.encode()).digest()),
    }
    assert keyed not in guesses
    assert uuid.UUID(keyed).version == 8


def test_during_a_rotation_every_replica_derives_with_the_previous_secret_until_since() -> None:
    since = datetime(2026, 12, 1, 12, tzinfo=UTC)
    secrets = OrderIdSecrets(b"n" * 32, previous=b"o" * 32, since=since)
    assert secrets.active(since - timedelta(seconds=1)) == b"o" * 32
    assert secrets.active(since) == b"n" * 32
    assert secrets.former(since - timedelta(seconds=1)) is None
    assert secrets.former(since + timedelta(hours=1)) == b"o" * 32
    assert secrets.former(since + timedelta(days=2)) is None
    assert OrderIdSecrets(b"n" * 32).active(since) == b"n" * 32
