"""A small HTTP/2 client for gRPC that runs on the event loop (no threads, no hand-offs).

grpc.aio hands every completion from grpc-core's threads to the event loop,
which costs 80-215 µs of CPU per call (bench/PROFILE.md). This client parses
frames in ``data_received`` and resolves futures directly, and writes a whole
unary request (HEADERS + DATA) in one ``transport.write``.
"""
