"""The bridge's exception tree.

Expected errors carry a gRPC code and become a Status JSON body at the HTTP
edge; anything else is a bug and becomes a 500 there, logged with a traceback::

    BridgeError                      code, message, http_status, details
    ├── InvalidArgument              400 / 3   bad JSON, fields, parameters, headers
    ├── UnsupportedMediaType         415 / 3
    ├── NotAcceptable                406 / 3   Accept-Encoding refuses every coding, identity too
    ├── PayloadTooLarge              413 / 8
    ├── HeadersTooLarge              431 / 8   forwarded metadata over the limit
    ├── BodyTimeout                  408 / 4   body not in within limits.body_read_timeout_s
    ├── RouteNotFound                404 / 5
    ├── MethodNotAllowed             405 / 12  carries the allowed methods
    ├── UpstreamNotReady             503 / 14  no descriptors / channel for the upstream yet
    ├── JsonEncodeError              500 / 13  an upstream message with no JSON form
    ├── InternalError                500 / 13  a bug, logged; answered in the request's protocol
    ├── HttpRefusal                  as sent   aiohttp's own refusal (its body-size cap)
    ├── OriginNotAllowed             403 / 7   preflight / WebSocket from an origin not allowed
    ├── StreamIdle                   504 / 4   no message either way for streams.idle_timeout_s
    ├── ShuttingDown                 503 / 14  a stream ended because the bridge is stopping
    └── UpstreamError                mapped    the upstream answered with a non-OK status

Foreign exceptions (grpc, orjson, protobuf) are translated into these at the
seam that sees them (``raise ... from exc``); the HTTP layer never sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grpc_bridge.status import Code, http_status_for


class ClientGone(Exception):
    """The client's connection went away: nobody is left to answer (not a BridgeError:
    there is no one to send an error to)."""


class BridgeError(Exception):
    """An expected failure that maps onto a gRPC status and an HTTP status."""

    code: int = Code.UNKNOWN
    #: Overrides the table in ``status.py`` for bridge-made errors (413, 415, 431).
    http_status_override: int | None = None
    #: Label of ``grpc_bridge_rejected_requests_total`` (see metrics.REJECT_REASONS).
    reject_reason: str = "bad_request"

    def __init__(
        self, message: str, *, details: Sequence[Any] = (), reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: Sequence[Any] = details
        if reason is not None:
            self.reject_reason = reason

    @property
    def http_status(self) -> int:
        if self.http_status_override is not None:
            return self.http_status_override
        return http_status_for(self.code)


class InvalidArgument(BridgeError):
    code = Code.INVALID_ARGUMENT


class UnsupportedMediaType(BridgeError):
    reject_reason = "unsupported_media_type"
    code = Code.INVALID_ARGUMENT
    http_status_override = 415


class NotAcceptable(BridgeError):
    """``Accept-Encoding`` refuses ``identity`` and every coding the bridge can send."""

    reject_reason = "not_acceptable"
    code = Code.INVALID_ARGUMENT
    http_status_override = 406


class PayloadTooLarge(BridgeError):
    reject_reason = "body_too_large"
    code = Code.RESOURCE_EXHAUSTED
    http_status_override = 413


class HeadersTooLarge(BridgeError):
    reject_reason = "metadata_too_large"
    code = Code.RESOURCE_EXHAUSTED
    http_status_override = 431


class BodyTimeout(BridgeError):
    """The request body did not arrive in time: answered, then the connection is closed."""

    reject_reason = "body_timeout"
    code = Code.DEADLINE_EXCEEDED
    http_status_override = 408


class RouteNotFound(BridgeError):
    reject_reason = "unknown_route"
    code = Code.NOT_FOUND


class MethodNotAllowed(BridgeError):
    code = Code.UNIMPLEMENTED
    http_status_override = 405
    reject_reason = "method_not_allowed"

    def __init__(self, message: str, *, allowed: Sequence[str]) -> None:
        super().__init__(message)
        self.allowed = tuple(allowed)


class UpstreamNotReady(BridgeError):
    reject_reason = "upstream_not_ready"
    code = Code.UNAVAILABLE


class JsonEncodeError(BridgeError):
    """A message from the upstream has no JSON form (NaN in a Value, an Any of an unknown type).

    Not the client's fault, hence INTERNAL / 500.
    """

    code = Code.INTERNAL


class InternalError(BridgeError):
    """A bug in the bridge, answered after it was logged (its message says where to look)."""

    reject_reason = ""
    code = Code.INTERNAL


class HttpRefusal(BridgeError):
    """A refusal made by aiohttp itself (its body-size cap), in the request's protocol."""

    def __init__(self, code: int, message: str, http_status: int) -> None:
        super().__init__(message)
        self.code = code
        self.http_status_override = http_status


class OriginNotAllowed(BridgeError):
    """A browser origin not in ``cors.allowed_origins`` (a preflight, or a WebSocket upgrade)."""

    reject_reason = "origin_not_allowed"
    code = Code.PERMISSION_DENIED


class StreamIdle(BridgeError):
    #: Ends a stream that had started: not a rejection.
    reject_reason = ""
    code = Code.DEADLINE_EXCEEDED


class ShuttingDown(BridgeError):
    #: Ends a stream that had started: not a rejection.
    reject_reason = ""
    code = Code.UNAVAILABLE


class UpstreamError(BridgeError):
    """A non-OK status from the upstream, with what it sent besides the code.

    ``details_bin`` is the raw ``grpc-status-details-bin`` trailer (a serialized
    google.rpc.Status); the HTTP layer renders it through the codec, which knows
    the upstream's descriptor pool.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        details_bin: bytes | None = None,
        initial_metadata: Sequence[tuple[str, str | bytes]] = (),
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details_bin = details_bin
        self.initial_metadata = tuple(initial_metadata)
        self.trailing_metadata = tuple(trailing_metadata)

    #: Not a rejection by the bridge: counted by the gRPC client metrics instead.
    reject_reason = ""


def grpc_family_code(exc: BridgeError) -> int:
    """The code a gRPC server would answer with (gRPC-Web, Connect): a path that names no
    method is UNIMPLEMENTED there, where the JSON routes say NOT_FOUND (an HTTP 404)."""
    return Code.UNIMPLEMENTED if isinstance(exc, RouteNotFound) else exc.code


def shown(text: str, limit: int = 40) -> str:
    """Client text fit for an error message or a log line: printable ASCII, bounded, quoted."""
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in text[:limit])
    return repr(cleaned + ("..." if len(text) > limit else ""))
