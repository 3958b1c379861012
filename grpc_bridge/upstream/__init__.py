"""Everything that talks to upstreams: the upstream API (``api.py``) and its transport.

The transport is the bridge's own HTTP/2 client; nothing here imports grpcio.
"""
