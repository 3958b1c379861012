"""One gRPC call on an HTTP/2 stream, as the call layer sees it: messages, metadata, status.

What the upstream sends arrives through :class:`~.response.Response`, which
this builds on; the call layer awaits :meth:`Stream.next_message`,
:meth:`Stream.wait_headers` and :meth:`Stream.wait_closed`, or takes what
is already here in batches (:meth:`Stream.take`). The stream hands window
back only as its reader takes bytes (see :mod:`.response`).

Compressed messages are held as they came and inflated by :mod:`.inflate`
when taken: flow control counts wire bytes, so inflating on arrival would let
a window of small gzip messages become gigabytes held for a reader that
stopped. The large ones (over :data:`.inflate.OFF_LOOP_BYTES`) are inflated on
a worker thread by the awaited path (:meth:`Stream.next_message`,
:meth:`Stream.inflated`); :meth:`Stream.take`, which never waits, stops
before one, so the order is kept, and bounds a batch by its inflated bytes as
well as its wire bytes.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate

from grpc_bridge.status import Code
from grpc_bridge.upstream.h2 import frames, inflate
from grpc_bridge.upstream.h2.grpc_status import Metadata, Status, metadata_of
from grpc_bridge.upstream.h2.inflate import OFF_LOOP_BYTES, Compressed, MessageError
from grpc_bridge.upstream.h2.response import Response, StreamOwner, wake_all

__all__ = [
    "MessageError",
    "Metadata",
    "Status",
    "Stream",
    "StreamOwner",
    "metadata_of",
    "wake_all",
]


class Stream(Response):
    """See the module docstring. Created by :meth:`Connection.open_stream`."""

    __slots__ = ()

    # -- awaited by the call layer -------------------------------------------------

    async def next_message(self) -> bytes | None:
        """The next whole message, inflated; None once the call ended (read ``status`` then)."""
        while True:
            if not self._inflating:
                if self.messages:
                    message = self.messages.popleft()
                    self._held -= len(message)
                    self._consumed()
                    if type(message) is not Compressed:
                        return message
                    self._compressed -= 1
                    try:
                        return await self.inflated(message)
                    except MessageError as exc:
                        self._bad_message(exc.status)
                        return None
                if self.status is not None:
                    return None
            await self._wait()

    def take(self, limit: int, max_bytes: int) -> list[bytes]:
        """Whole messages already received, inflated, without waiting: up to ``limit``
        of them, stopping once ``max_bytes`` are taken, counted as received and
        again as inflated (at least one if any is there), and before a compressed
        one too large to inflate on the loop (for :meth:`next_message`, which
        awaits a worker thread)."""
        messages = self.messages
        count = min(limit, len(messages))
        if not count or self._inflating:
            return []
        # Whole batches at C speed: this runs once per batch of a stream's messages.
        popleft = messages.popleft
        taken = [popleft() for _ in range(count)]
        size = sum(map(len, taken))
        if size > max_bytes and count > 1:
            cut = bisect_left(list(accumulate(map(len, taken))), max_bytes) + 1
            if cut < count:
                size -= self._put_back(taken, cut)
        if self._compressed:
            # ``max_bytes`` bounds what the batch holds once inflated: counted on
            # wire bytes, 64 KiB of small gzip messages could inflate to GBs.
            inflated = 0
            for index, message in enumerate(taken):
                if inflated >= max_bytes and index:
                    size -= self._put_back(taken, index)
                    break
                if type(message) is Compressed:
                    if len(message) > OFF_LOOP_BYTES:
                        size -= self._put_back(taken, index)
                        break
                    self._compressed -= 1
                    try:
                        taken[index] = message = self.inflate(message)
                    except MessageError as exc:
                        del taken[index:]
                        self._bad_message(exc.status)
                        return taken
                inflated += len(message)
        self._held -= size
        self._consumed()
        return taken

    def _put_back(self, taken: list[bytes], index: int) -> int:
        """Return ``taken[index:]`` to the front of ``messages``; their size in bytes."""
        rest = taken[index:]
        del taken[index:]
        self.messages.extendleft(reversed(rest))
        return sum(map(len, rest))

    async def inflated(self, message: bytes) -> bytes:
        """:meth:`inflate`, on a worker thread for a large message (milliseconds of CPU).

        Raises :class:`MessageError` as :meth:`inflate` does.
        """
        if type(message) is not Compressed or len(message) <= OFF_LOOP_BYTES:
            return self.inflate(message)
        self._inflating = True
        try:
            return await self.connection.loop.run_in_executor(
                None, inflate.message, self._encoding, message, self._max_receive
            )
        finally:
            self._inflating = False
            self._wake()

    def inflate(self, message: bytes) -> bytes:
        """``message`` as the reader needs it: inflated if it came compressed.

        Raises :class:`MessageError` when it does not inflate, or inflates past
        max_receive_message_bytes (a small message can inflate to GBs).
        """
        if type(message) is not Compressed:
            return message
        return inflate.message(self._encoding, message, self._max_receive)

    def _bad_message(self, status: Status) -> None:
        # The messages after it are never handed on: the call ends with its status.
        self.messages.clear()
        self._held = self._compressed = 0
        self.release()
        self.connection.reset(self, frames.CANCEL, status)
        if self.status is not None and self.status.code == Code.OK:
            # The upstream ended the call before this message was taken: not OK after all.
            self.status = status

    def give_back(self, messages: list[bytes]) -> None:
        """Put messages :meth:`take` returned back in front, for :meth:`next_message`."""
        self.messages.extendleft(reversed(messages))
        self._held += sum(map(len, messages))
        if self._client is not None:
            self._consumed()  # (counted again in its client's budget)

    async def wait_headers(self) -> None:
        while self.headers is None and self.status is None:
            await self._wait()

    async def wait_closed(self) -> Status:
        while self.status is None:
            await self._wait()
        return self.status

    def initial_metadata(self) -> Metadata:
        return metadata_of(self.headers) if self.headers is not None else ()

    def trailing_metadata(self) -> Metadata:
        if self.trailers is None:
            return ()
        # Like grpc, keep grpc-status-details-bin among the trailers.
        return metadata_of(self.trailers)
