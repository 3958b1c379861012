"""JSON ↔ protobuf conversion. Knows neither aiohttp nor grpc."""
