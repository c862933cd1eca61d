"""The embedded Apache Kafka's cluster id: Kafka's format, and never one `kafka-storage format
-t` would read as an option (an id starting with "-" failed 1 fresh stack in 64)."""

from __future__ import annotations

import base64
import re

from devkit.apache_kafka import cluster_id


def test_cluster_ids_are_kafkas_format_and_never_start_with_a_dash() -> None:
    ids = [cluster_id() for _ in range(5_000)]  # ~78 would start with "-" if nothing prevented it
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", each) for each in ids)
    assert not [each for each in ids if each.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(each + "==")) == 16 for each in ids)
    assert len(set(ids)) == len(ids)
