"""The producer: gRPC OrderService that validates orders and publishes them to Kafka."""
