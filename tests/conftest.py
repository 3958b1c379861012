"""Shared fixtures: real grpc.aio upstreams on ephemeral loopback ports."""

from __future__ import annotations

import sys
from pathlib import Path

# Generated code for tests/protos (see `make protos`); its imports are rooted
# at the proto package (``from bridgetest.v1 import common_pb2``).
sys.path.insert(0, str(Path(__file__).parent / "gen"))
