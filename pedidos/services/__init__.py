"""The service layer: use cases over the ports, free of gRPC, Kafka, SMTP and Elasticsearch."""
