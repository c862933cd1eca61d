"""The devkit key is one per process tree: a spawned child (the bench's load workers) presents
the key its parent handed to the producer, not one of its own."""

from __future__ import annotations

import multiprocessing

from devkit.credentials import credentials_env, dev_key
from pedidos.runtime.api_keys import KeyVerifier, parse_keys


def _child_key() -> str:
    from devkit.credentials import dev_key

    return dev_key()[0]


def test_a_spawned_process_presents_the_key_the_producer_checks() -> None:
    producer_keys = credentials_env()["GRPC_API_KEYS"]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        child = pool.apply(_child_key)
    assert child == dev_key()[0]
    assert KeyVerifier(parse_keys(producer_keys)).verify(child) is not None
