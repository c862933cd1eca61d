"""The command-line client: sends random catalogue orders to the producer over gRPC."""
