"""The command-line client: ``grpc-bridge list | describe | call`` against a gRPC server.

A grpcurl-class tool built from the bridge's own parts (reflection client,
descriptor loader, channel pool, call wrapper, JSON codec, Status rendering);
see docs/cli.md. ``commands`` parses the flags and runs a command; ``session``
holds the channel and the descriptors learned; ``invoke`` drives one call of
any kind; ``protoprint`` prints descriptors as grpcurl does; ``requests`` and
``output`` are the two ends; ``insecure`` is the ``--insecure`` TLS tunnel.
"""
