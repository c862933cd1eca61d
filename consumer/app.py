"""Builds the consumer's object graph from Settings and runs it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from consumer.mail_outage import MailOutage
from consumer.runner import ConsumerRunner, DeadLetters
from consumer.workflow import OrderWorkflow, StageDelays
from pedidos.adapters.elasticsearch import search_index
from pedidos.adapters.email.render import EmailRenderer
from pedidos.adapters.kafka.publisher import KafkaPublisher, producer_config
from pedidos.adapters.kafka.record_source import KafkaRecordSource, consumer_config
from pedidos.adapters.smtp_mailer import SmtpMailer, SmtpSettings
from pedidos.bootstrap import search_client
from pedidos.runtime.config import Settings

log = logging.getLogger(__name__)

# State records are retried by the workflow itself, so librdkafka may give up early.
STATE_PUBLISH_TIMEOUT_S = 30.0


def smtp_settings(settings: Settings) -> SmtpSettings:
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        user=settings.smtp_user,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
        ssl=settings.smtp_ssl,
        timeout_s=settings.smtp_timeout_s,
        connections=settings.smtp_connections,
        ca_file=settings.smtp_ca_file,
    )


async def run_consumer(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    publisher = KafkaPublisher(
        producer_config(
            settings.kafka_bootstrap_servers, "pedidos-consumer", STATE_PUBLISH_TIMEOUT_S
        )
    )
    mailer = SmtpMailer(smtp_settings(settings))
    index = search_index.OrderSearchIndex(
        search_client(settings),
        settings.elasticsearch_events_index,
        settings.elasticsearch_orders_index,
    )
    dead_letters = DeadLetters(publisher, settings.pedidos_dead_letter_topic)
    mail_outage = MailOutage()
    workflow = OrderWorkflow(
        mailer=mailer,
        index=index,
        publisher=publisher,
        renderer=EmailRenderer(settings.smtp_from),
        states_topic=settings.pedidos_states_topic,
        delays=StageDelays(settings.stage_delay_min_s, settings.stage_delay_max_s),
        dead_letter=dead_letters.for_workflow,
        unrecorded_sends=settings.consumer_max_unrecorded_emails,
        mail_outage=mail_outage,
    )
    config = consumer_config(
        settings.kafka_bootstrap_servers,
        settings.kafka_consumer_group,
        settings.kafka_session_timeout_ms,
    )
    runner = ConsumerRunner(
        lambda assigned, revoked: KafkaRecordSource(
            config, [settings.pedidos_topic, settings.pedidos_states_topic], assigned, revoked
        ),
        workflow,
        dead_letters,
        settings.consumer_max_in_flight,
        orders_topic=settings.pedidos_topic,
        max_open_orders=settings.consumer_max_open_orders,
        mail_outage=mail_outage,
    )
    log.info("consumer started", extra={"group": settings.kafka_consumer_group})
    try:
        await runner.run(stop)
    finally:
        await index.close()
        await asyncio.to_thread(publisher.close, 10)
        await asyncio.to_thread(mailer.close)
        log.info("consumer stopped", extra={"processed": runner.processed})
