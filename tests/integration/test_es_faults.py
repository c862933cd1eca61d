"""Elasticsearch failing under a real consumer: busy (429), unavailable (503), refusing for good.

The transient faults come from tests.faults.FaultyElasticsearch, a proxy in front of the ES
stand-in; the permanent one is the stand-in's own answer to a document its strict mapping
refuses.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from devkit.inbox import STATE_SLUGS, Inbox
from devkit.indices import search_docs
from devkit.orders import make_details
from devkit.processes import REPO, Services
from devkit.stack import EmbeddedStack
from devkit.topics import publish_order_records, read_topic, topic_size
from pedidos.adapters.elasticsearch.search_index import (
    OrderSearchIndex,
    PermanentIndexError,
    connect,
)
from pedidos.wire.records import header_value
from tests.conftest import REJECTED_DOMAIN
from tests.e2e.test_pipeline import assert_documents, wait_all_emails
from tests.faults import FaultyElasticsearch

pytestmark = pytest.mark.integration


def create_legacy_events_index(es_url: str) -> str:
    """An events index made from the template as it was before `email_error` existed.

    Its strict mapping refuses exactly the event documents of rejected e-mails: a real,
    permanent mapping error that hits some documents and not others.
    """
    template = json.loads((REPO / "admin/elasticsearch/pedidos-order-events.json").read_text())
    body: dict[str, Any] = template["template"]
    del body["mappings"]["properties"]["email_error"]
    name = f"legacy-events-{uuid.uuid4().hex[:8]}"
    es = Elasticsearch(es_url)
    try:
        es.indices.create(index=name, settings=body["settings"], mappings=body["mappings"])
    finally:
        es.close()
    return name


def test_a_refused_document_fails_only_its_own_write_not_its_batch_mates(
    pipeline_env: dict[str, str],
) -> None:
    from pedidos.domain.order import Order, utc_now
    from pedidos.domain.states import OrderState
    from pedidos.wire.search_documents import event_document

    env = pipeline_env
    events_index = create_legacy_events_index(env["ELASTICSEARCH_URL"])

    def event(email_error: str | None) -> dict[str, Any]:
        order = Order(str(uuid.uuid4()), make_details(), utc_now())
        order.enter(OrderState.PROCESANDO, utc_now())
        return event_document(
            order,
            OrderState.PROCESANDO,
            email_status="rejected" if email_error else "sent",
            email_message_id="<m@tienda.test>",
            email_error=email_error,
            correlation_id="c",
        )

    good, refused = event(None), event("550 no such user")

    async def scenario() -> list[BaseException | None]:
        index = OrderSearchIndex(
            connect(env["ELASTICSEARCH_URL"]), events_index, env["ELASTICSEARCH_ORDERS_INDEX"]
        )
        try:
            # Submitted in the same tick: one bulk request carries both.
            return list(
                await asyncio.gather(
                    index.write_event(good), index.write_event(refused), return_exceptions=True
                )
            )
        finally:
            await index.close()

    good_outcome, refused_outcome = asyncio.run(scenario())
    assert good_outcome is None, f"the written document's step failed: {good_outcome!r}"
    assert isinstance(refused_outcome, PermanentIndexError)
    assert "strict_dynamic_mapping_exception" in str(refused_outcome)
    assert refused["order_id"] in str(refused_outcome)
    stored = search_docs(env["ELASTICSEARCH_URL"], events_index, [good["order_id"]])
    assert [d["order_id"] for d in stored] == [good["order_id"]]


def test_a_consumer_behind_a_busy_elasticsearch_loses_and_repeats_nothing(
    services: Services, stack: EmbeddedStack
) -> None:
    env = services.env
    proxy = FaultyElasticsearch(env["ELASTICSEARCH_URL"])
    try:
        proxy.fail_requests(2, 429)  # whatever the first requests are
        proxy.fail_requests(2, 503, "/_mget")  # ledger lookups
        proxy.fail_requests(2, 503, "/_bulk")
        # Events written, but the answer is lost: the retry meets its own documents (409).
        proxy.fail_requests(1, 504, "/_bulk", body_part=b'{"create"', after_forward=True)
        proxy.reject_bulk_items(10, "create")  # event documents, the e-mail ledger
        proxy.reject_bulk_items(5, "create", status=503)
        proxy.reject_bulk_items(6, "index")  # current-state documents
        proxy.reject_bulk_items(4, "index", status=503)
        consumer = services.consumer(ELASTICSEARCH_URL=proxy.url)
        order_ids = publish_order_records(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"], 10)
        inbox = Inbox(stack.maildir)
        wait_all_emails(inbox, order_ids, timeout=120)
        assert_documents(env, order_ids)
        # Every fault happened: otherwise this test proved nothing.
        assert proxy.armed() == 0, f"faults never injected; injected: {proxy.injected}"
        print(f"injected: {dict(proxy.injected)}; requests: {dict(proxy.requests)}")
        log = consumer.log()
        for status in ("HTTP 429", "HTTP 503", "HTTP 504"):
            assert status in log
        # Anything repeated would have arrived by the time all documents were checked.
        states = inbox.states_by_order(order_ids)
        assert all(states[o] == STATE_SLUGS for o in order_ids), states
        assert topic_size(env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_DEAD_LETTER_TOPIC"]) == 0
        assert consumer.running
    finally:
        proxy.close()


def test_a_document_elasticsearch_refuses_for_good_dead_letters_its_record_with_the_reason(
    services: Services, stack: EmbeddedStack
) -> None:
    env = services.env
    events_index = create_legacy_events_index(env["ELASTICSEARCH_URL"])
    consumer = services.consumer(ELASTICSEARCH_EVENTS_INDEX=events_index)
    bootstrap, topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["PEDIDOS_TOPIC"]
    (refused,) = publish_order_records(bootstrap, topic, 1, email=f"nadie@{REJECTED_DOMAIN}")
    dead = read_topic(bootstrap, env["PEDIDOS_DEAD_LETTER_TOPIC"], 2, timeout=60)
    # Orders sent after the refusal still complete: the pipeline goes on.
    order_ids = publish_order_records(bootstrap, topic, 4)
    inbox = Inbox(stack.maildir)
    wait_all_emails(inbox, order_ids)
    assert_documents({**env, "ELASTICSEARCH_EVENTS_INDEX": events_index}, order_ids)

    kinds = sorted(header_value(h, "pedidos-dlq-kind") or "" for _, _, h in dead)
    assert kinds == ["notification", "record"], dead
    ((key, value, headers),) = [
        d for d in dead if header_value(d[2], "pedidos-dlq-kind") == "record"
    ]
    assert key == refused.encode()
    reason = header_value(headers, "pedidos-error") or ""
    assert reason.startswith("PermanentIndexError: event "), reason
    assert "strict_dynamic_mapping_exception" in reason
    assert "email_error" in reason
    assert (header_value(headers, "pedidos-source") or "").startswith(f"{topic}/")
    assert refused.encode() in (value or b"")  # the original record, replayable
    assert "record dead-lettered" in consumer.log()
    assert consumer.running
    assert inbox.states_by_order([refused]) == {}
