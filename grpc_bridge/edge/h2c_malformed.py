"""A malformed h2c request is a stream error: its stream is reset, the connection goes on.

RFC 9113 §8.1.1 makes a malformed request (a field h2 refuses by §8.2, bad
pseudo-headers by §8.3, a ``content-length`` that is not one or that the DATA
frames do not add up to, trailers without END_STREAM) a stream error of type
PROTOCOL_ERROR. ``h2`` runs every one of those checks in its stream's
``receive_headers`` / ``receive_data``, but lets any error there end the whole
connection with GOAWAY, taking every other call on it along.

:class:`StreamErrorsConnection` keeps every check and turns what a stream's
own checks raise into that stream's reset, through h2's own path for stream
errors: the stream is closed by a reset (``StreamClosedError`` with an
``error_code``, which h2 answers with RST_STREAM of that code; a DATA frame's
bytes h2 then gives back to the connection window, as on any closed stream,
so nothing here may again) and a
``StreamReset`` event with ``remote_reset`` False reaches edge/h2c.py, which
cancels the stream's call. The header block is decoded before those checks
run, so the connection's HPACK state is whole. Errors of the connection
itself (HPACK, frames, stream ids, flow control, too many streams) and a
stream state machine's own refusal stay connection errors, as h2 has them.
(h2's ``_begin_new_stream``, where each stream is made: a test in
tests/test_h2c_malformed_requests_are_stream_errors.py fails if it is gone.)

It is a :class:`~grpc_bridge.edge.h2c_floods.CountedConnection`, which counts
among others the DATA and HEADERS frames that come on a stream closed by a
reset (the client's, a malformed request's, the bridge's): h2 answers each
with RST_STREAM, so edge/h2c.py counts them as it counts PINGs. (h2's
``_receive_frame``: tests/test_h2c_frames_on_reset_streams_are_counted.py
fails if it is gone.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import h2.connection
import h2.events
import h2.exceptions
import h2.stream
from h2.errors import ErrorCodes

from grpc_bridge.edge.h2c_floods import CountedConnection

_Result = TypeVar("_Result")


class StreamMalformed(h2.events.StreamReset):
    """The bridge reset a stream whose request is malformed; ``reason`` says how."""

    reason: str = ""


def _stream_errors(
    stream: h2.stream.H2Stream, receive: Callable[..., _Result]
) -> Callable[..., _Result]:
    @functools.wraps(receive)
    def checked(*args: Any, **kwargs: Any) -> _Result:
        try:
            return receive(*args, **kwargs)
        except (h2.exceptions.StreamClosedError, h2.exceptions.FlowControlError):
            raise
        except h2.exceptions.ProtocolError as exc:
            if stream.state_machine.state == h2.stream.StreamState.CLOSED:
                raise  # the state machine refused the frame: a connection error, as h2 has it
            stream.reset_stream(ErrorCodes.PROTOCOL_ERROR)  # closed by a reset, for h2
            error = h2.exceptions.StreamClosedError(stream.stream_id)
            error.error_code = ErrorCodes.PROTOCOL_ERROR
            event = StreamMalformed(
                stream_id=stream.stream_id,
                error_code=ErrorCodes.PROTOCOL_ERROR,
                remote_reset=False,
            )
            event.reason = str(exc)
            error._events = [event]
            raise error from exc

    return checked


class StreamErrorsConnection(CountedConnection):
    """h2's connection, whose streams' malformed requests are stream errors."""

    def _begin_new_stream(
        self, stream_id: int, allowed_ids: h2.connection.AllowedStreamIDs
    ) -> h2.stream.H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.receive_headers = _stream_errors(stream, stream.receive_headers)  # type: ignore[method-assign]
        stream.receive_data = _stream_errors(stream, stream.receive_data)  # type: ignore[method-assign]
        return stream
