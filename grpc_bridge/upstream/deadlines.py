"""Request deadlines: ``Grpc-Timeout`` / ``Connect-Timeout-Ms`` parsed strictly, then clamped."""

from __future__ import annotations

import re

from grpc_bridge.errors import InvalidArgument

# gRPC over HTTP/2: TimeoutValue is 1-8 ASCII digits, TimeoutUnit one of H M S m u n.
_GRPC_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# Connect protocol: a positive integer of at most 10 digits.
_CONNECT_TIMEOUT = re.compile(r"[0-9]{1,10}")


def parse_timeout(grpc_timeout: str | None, connect_timeout_ms: str | None) -> float | None:
    """Seconds the client asked for, or None. ``Grpc-Timeout`` wins when both are sent."""
    if grpc_timeout is not None:
        match = _GRPC_TIMEOUT.fullmatch(grpc_timeout.strip())
        if match is None:
            raise InvalidArgument(
                f"invalid Grpc-Timeout header {grpc_timeout!r}: "
                "expected 1-8 digits followed by one of H, M, S, m, u, n (e.g. 500m)",
                reason="bad_timeout",
            )
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if connect_timeout_ms is not None:
        if _CONNECT_TIMEOUT.fullmatch(connect_timeout_ms.strip()) is None:
            raise InvalidArgument(
                f"invalid Connect-Timeout-Ms header {connect_timeout_ms!r}: "
                "expected a whole number of milliseconds (at most 10 digits)",
                reason="bad_timeout",
            )
        return int(connect_timeout_ms) / 1000.0
    return None


def effective_timeout(requested: float | None, default: float, maximum: float) -> float:
    """The deadline to send upstream: the client's, clamped to ``maximum``; else ``default``."""
    if requested is None:
        return default
    return min(requested, maximum)
