"""When a failed call is sent again: gRPC's A6 retry policy, and transparent retries.

Unary calls failing UNAVAILABLE are retried up to ``retries.max_attempts``
with exponential backoff and jitter, only while the upstream has not sent
response headers (the call is not committed), under a token-bucket throttle
(A6 ``retryThrottling``), and never past the call's deadline; the upstream
may ask for a delay or for no retry (``grpc-retry-pushback-ms``).

Apart from the policy, a call the upstream never saw (a refused stream, or
GOAWAY above it) is sent once more, transparently, whatever the policy
(:meth:`Attempts.transparent`; a server-streaming call does the same in
:mod:`~grpc_bridge.upstream.stream_call`): its request is known in full.
"""

from __future__ import annotations

import random

from grpc_bridge.settings import Upstream
from grpc_bridge.status import Code
from grpc_bridge.upstream.h2.stream import Status, Stream


class Throttle:
    """A6 retryThrottling: retries stop while tokens <= max_tokens / 2."""

    __slots__ = ("_max", "_ratio", "_tokens")

    def __init__(self, max_tokens: int, ratio: float) -> None:
        self._max = float(max_tokens)
        self._ratio = ratio
        self._tokens = float(max_tokens)

    def failed(self) -> bool:
        """Count a retryable failure; True when a retry is allowed."""
        self._tokens = max(0.0, self._tokens - 1)
        return self._tokens > self._max / 2

    def succeeded(self) -> None:
        self._tokens = min(self._max, self._tokens + self._ratio)


def pushback_s(stream: Stream | None) -> float | None:
    """A6 ``grpc-retry-pushback-ms``: seconds to wait, -1 for "do not retry", None if absent."""
    if stream is None or stream.trailers is None:
        return None
    for name, value in stream.trailers:
        if name == "grpc-retry-pushback-ms":
            # ASCII digits only (str.isdigit takes "²"), and few of them: int() refuses
            # over 4,300 digits, and no sane pushback needs ten.
            if value.isascii() and value.isdigit() and len(value) <= 9:
                return int(value) / 1000
            return -1.0
    return None


class Attempts:
    """A failed call's attempts so far: asked after each failure whether, and when, to retry.

    Made at the first failure only: a call that succeeds at once costs nothing.
    """

    __slots__ = ("_backoff_step", "_retries", "_throttle", "_transparent", "attempt")

    def __init__(self, upstream: Upstream, throttle: Throttle) -> None:
        self._retries = upstream.retries
        self._throttle = throttle
        self._transparent = True
        self._backoff_step = 0
        #: Attempts made so far that count for the policy (a transparent one does not).
        self.attempt = 1

    def next(self) -> int:
        """Count the attempt about to be made; how many came before (A6's
        ``grpc-previous-rpc-attempts``)."""
        self.attempt += 1
        return self.attempt - 1

    def transparent(self, status: Status, stream: Stream | None) -> bool:
        """Sent again at once, not counted: a stream the upstream never processed, once per call."""
        if status.unprocessed and self._transparent and stream is not None:
            self._transparent = False
            return True
        return False

    def delay(self, status: Status, stream: Stream | None) -> float | None:
        """Seconds to wait before the next attempt, None for no more attempts (A6)."""
        retries = self._retries
        if status.code != Code.UNAVAILABLE or retries.max_attempts <= 1:
            return None
        # A6: every failure with a retryable code costs a token, committed or not.
        allowed = self._throttle.failed()
        committed = stream is not None and stream.headers is not None
        if committed or not allowed or self.attempt >= retries.max_attempts:
            return None
        pushback = pushback_s(stream)
        if pushback is None:
            backoff = min(
                retries.initial_backoff_s * retries.backoff_multiplier**self._backoff_step,
                retries.max_backoff_s,
            )
            self._backoff_step += 1
            return random.uniform(0, backoff)
        if pushback < 0:
            return None  # the upstream said not to retry
        self._backoff_step = 0
        return pushback
