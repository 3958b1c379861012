"""Everything that talks to the upstream: the only importer of grpc.aio."""
