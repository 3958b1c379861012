"""The embedded demo gRPC service behind ``grpc-bridge demo``."""
