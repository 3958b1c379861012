"""The command-line client: ``grpc-bridge list | describe | call`` against a gRPC server.

A grpcurl-class tool built from the bridge's own parts (reflection client,
descriptor loader, the native HTTP/2 client behind the upstream API, JSON
codec, Status rendering); see docs/cli.md. ``commands`` parses the flags and
runs a command; ``connection`` opens the bridge's client from the flags'
settings; ``session`` holds it and the descriptors learned; ``invoke`` drives
one call of any kind; ``protoprint`` prints descriptors as grpcurl does;
``requests`` and ``output`` are the two ends. No grpcio: the CLI loads none.
"""
