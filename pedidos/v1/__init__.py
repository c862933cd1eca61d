"""Generated gRPC/protobuf stubs for protos/pedidos/v1 (regenerate with `make proto`)."""
