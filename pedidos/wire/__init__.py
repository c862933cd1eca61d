"""Wire formats: Kafka records, protobuf mapping, Elasticsearch documents."""
