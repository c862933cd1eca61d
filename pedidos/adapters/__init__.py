"""Thin adapters: the only modules that import confluent_kafka, smtplib or elasticsearch."""
