"""grpc_bridge: call gRPC services from browsers and plain HTTP clients with JSON."""

__version__ = "0.1.0"
