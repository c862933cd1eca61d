"""Builds shared adapters from Settings, so every component wires them the same way."""

from __future__ import annotations

from typing import Any

from pedidos.adapters.elasticsearch import search_index
from pedidos.runtime.config import Settings


def search_client(settings: Settings) -> search_index.AsyncElasticsearch:
    return search_index.connect(settings.elasticsearch_url, **search_auth(settings))


def search_auth(settings: Settings) -> dict[str, Any]:
    """The credentials keyword of an `Elasticsearch(...)` client, if any are configured."""
    if settings.elasticsearch_api_key:
        return {"api_key": settings.elasticsearch_api_key.get_secret_value()}
    if settings.elasticsearch_username and settings.elasticsearch_password:
        return {
            "basic_auth": (
                settings.elasticsearch_username,
                settings.elasticsearch_password.get_secret_value(),
            )
        }
    return {}


def blocking_search_client(settings: Settings, timeout_s: float = 30) -> Any:
    """A synchronous client, for the admin commands."""
    from elasticsearch import Elasticsearch

    return Elasticsearch(
        settings.elasticsearch_url, request_timeout=timeout_s, **search_auth(settings)
    )
