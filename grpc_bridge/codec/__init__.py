"""Messages as clients write them: the codecs every protocol picks from (message.py: JSON ↔
protobuf, or protobuf bytes passed through) and JSON's own rules. Knows neither aiohttp nor grpc."""
