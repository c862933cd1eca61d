"""Builds shared adapters from Settings, so every component wires them the same way."""

from __future__ import annotations

from pedidos.adapters import search_index
from pedidos.config import Settings


def search_client(settings: Settings) -> search_index.AsyncElasticsearch:
    return search_index.connect(
        settings.elasticsearch_url,
        api_key=settings.elasticsearch_api_key.get_secret_value()
        if settings.elasticsearch_api_key
        else None,
        username=settings.elasticsearch_username,
        password=settings.elasticsearch_password.get_secret_value()
        if settings.elasticsearch_password
        else None,
    )
