"""The Elasticsearch client encodes bodies with orjson, in the same bytes as the default one."""

from __future__ import annotations

from elasticsearch.serializer import JsonSerializer, NdjsonSerializer

from pedidos.adapters.elasticsearch.search_index import OrjsonNdjsonSerializer, connect

DOCS = [
    {"create": {"_index": "pedidos-order-events", "_id": "o-1:Preparación"}},
    {"product_name": "Audífonos Bluetooth", "price_minor": 129_990, "card_brand": None},
]


def test_every_json_mimetype_uses_orjson_with_the_default_bytes() -> None:
    serializers = connect("http://localhost:9200").transport.serializers
    for mimetype in ("application/x-ndjson", "application/vnd.elasticsearch+x-ndjson"):
        ndjson = serializers.get_serializer(f"{mimetype}; compatible-with=9")
        assert isinstance(ndjson, OrjsonNdjsonSerializer)
        assert ndjson.dumps(DOCS) == NdjsonSerializer().dumps(DOCS)
        assert ndjson.loads(ndjson.dumps(DOCS)) == DOCS
    for mimetype in ("application/json", "application/vnd.elasticsearch+json"):
        json = serializers.get_serializer(f"{mimetype}; compatible-with=9")
        assert type(json).__name__ == "OrjsonSerializer"
        assert json.dumps(DOCS[1]) == JsonSerializer().dumps(DOCS[1])
