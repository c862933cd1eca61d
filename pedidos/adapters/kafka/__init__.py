"""Kafka adapters: the publisher, the record source and the state feed."""
