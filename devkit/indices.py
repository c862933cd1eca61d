"""What landed in Elasticsearch, read back."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from elasticsearch import Elasticsearch


def search_docs(es_url: str, index: str, order_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Every document of these orders in `index` (after a refresh), with its `_id`."""
    es = Elasticsearch(es_url)
    try:
        es.indices.refresh(index=index)
        ids = list(order_ids)
        docs: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            response = es.search(
                index=index,
                query={"terms": {"order_id": ids[start : start + 500]}},
                size=10_000,
            )
            docs.extend({"_id": h["_id"], **h["_source"]} for h in response["hits"]["hits"])
        return docs
    finally:
        es.close()
