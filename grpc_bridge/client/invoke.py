"""``grpc-bridge call``: one RPC of any kind, JSON in and out, through the upstream API.

Every kind is a :class:`~grpc_bridge.upstream.api.StreamCall` of the
session's :class:`~grpc_bridge.upstream.api.CallInvoker` (the bridge's
native client), so failures arrive as the HTTP side sees them
(:class:`~grpc_bridge.errors.UpstreamError` with the code, message, details
trailer and both metadata sets):

- unary and server-streaming: the one request is sent with the call (a unary
  call too is started this way: without ``--max-time`` it has no deadline,
  which ``CallInvoker.unary`` always sets);
- client-streaming and bidi: requests are written as their lines arrive while
  responses are read, so a bidi call interleaves (a response is printed as
  soon as it comes, before stdin ends).

A bad request line cancels the call: the server sees the cancellation, and
the CLI reports the line (exit 1) rather than the CANCELLED status it caused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from google.protobuf import descriptor_pool
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import Message
from google.rpc import status_pb2

from grpc_bridge.client.output import STATUS_EXIT_OFFSET, Output, format_metadata, plural
from grpc_bridge.client.protoprint import describe
from grpc_bridge.client.requests import InputError, documents
from grpc_bridge.client.session import ClientError, Session
from grpc_bridge.codec.details import render_details
from grpc_bridge.codec.json_codec import JsonOptions, MessageCodec
from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import BridgeError, UpstreamError
from grpc_bridge.upstream.api import StreamCall
from grpc_bridge.upstream.metadata import Metadata

__all__ = ["invoke"]

_ANY = AnyMessage.DESCRIPTOR.full_name


class _Call:
    """State of one invocation: counts, verbose bookkeeping, codecs."""

    def __init__(
        self,
        session: Session,
        method: MethodInfo,
        options: JsonOptions,
        out: Output,
        *,
        verbose: bool,
    ) -> None:
        self.session = session
        self.method = method
        self.options = options
        self.out = out
        self.verbose = verbose
        self.sent = 0
        self.received = 0
        self._headers_shown = False
        self._codecs: dict[tuple[type[Message], int], MessageCodec] = {}

    # -- requests -----------------------------------------------------------------

    async def requests(self, lines: AsyncIterator[str]) -> AsyncIterator[Message]:
        async for document in documents(lines):
            number = self.sent + 1
            try:
                value = orjson.loads(document)
            except orjson.JSONDecodeError:
                value = None  # the codec words the error
            await self.session.ensure_types(_type_names_in_json(value))
            codec = self._codec(self.method.input_class)
            try:
                message = codec.decode(document.encode())
            except BridgeError as exc:
                raise InputError(f"request message {number}: {exc}") from exc
            self.sent += 1
            yield message

    # -- responses ----------------------------------------------------------------

    async def show(self, call: StreamCall, message: Message) -> None:
        await self.show_headers(call)
        await self.session.ensure_types(_type_names_in_message(message))
        codec = self._codec(self.method.output_class)
        try:
            value = codec.to_value(message)
        except BridgeError as exc:
            raise ClientError(f"response message {self.received + 1}: {exc}") from exc
        self.received += 1
        if self.verbose and self.received == 1:
            self.out.note("\nResponse contents:")
        self.out.message(value)

    async def show_headers(self, call: StreamCall) -> None:
        if self.verbose and not self._headers_shown:
            self._headers_shown = True
            headers = await call.initial_metadata()
            self.out.section("Response headers received:", format_metadata(headers))

    async def finish(self, call: StreamCall) -> None:
        await self.show_headers(call)
        if self.verbose:
            trailers = await call.trailing_metadata()
            self.out.section("Response trailers received:", format_metadata(trailers))
            self._summary()

    async def fail(self, error: UpstreamError) -> int:
        if self.verbose:
            if not self._headers_shown:
                self._headers_shown = True
                self.out.section(
                    "Response headers received:", format_metadata(error.initial_metadata)
                )
            self.out.section(
                "Response trailers received:", format_metadata(error.trailing_metadata)
            )
            self._summary()
        await self.session.ensure_types(_detail_type_names(error.details_bin))
        details = render_details(error.details_bin, self._pool())
        self.out.status(error.code, str(error), details)
        return STATUS_EXIT_OFFSET + error.code

    def _summary(self) -> None:
        self.out.note(
            f"Sent {plural(self.sent, 'request')} and received {plural(self.received, 'response')}"
        )

    def _pool(self) -> Any:
        return self.session.pool

    def _codec(self, message_class: type[Message]) -> MessageCodec:
        """One codec per type and pool: the pool changes only when an Any brought a new type."""
        pool = self._pool()
        key = (message_class, id(pool))
        codec = self._codecs.get(key)
        if codec is None:
            codec = self._codecs[key] = MessageCodec(message_class, pool, self.options)
        return codec


async def invoke(
    session: Session,
    method_name: str,
    lines: AsyncIterator[str],
    metadata: Metadata,
    options: JsonOptions,
    out: Output,
    *,
    verbose: bool,
) -> int:
    """Call ``method_name``; returns the exit code (0, or 64 + a non-OK status code)."""
    method = await session.method(method_name)
    state = _Call(session, method, options, out, verbose=verbose)
    if verbose:
        out.section("Resolved method descriptor:", describe(method.descriptor, session.files))
        out.section("Request metadata to send:", format_metadata(metadata))
    invoker = session.invoker
    requests = state.requests(lines)
    if method.kind.client_streams:
        call = invoker.request_stream(method, metadata=metadata, timeout=session.remaining())
        return await _request_stream(state, call, requests)
    request = await _single_request(method, requests)
    call = invoker.server_stream(method, request, metadata=metadata, timeout=session.remaining())
    async with call:
        try:
            if method.kind is MethodKind.UNARY:
                await state.show(call, await call.response())
            else:
                while (message := await call.read()) is not None:
                    await state.show(call, message)
        except UpstreamError as exc:
            return await state.fail(exc)
        await state.finish(call)
    return 0


async def _single_request(method: MethodInfo, requests: AsyncIterator[Message]) -> Message:
    """The one request of a unary or server-streaming call; none given is the empty message."""
    messages = [message async for message in requests]
    if len(messages) > 1:
        raise InputError(
            f"{method.full_name} takes one request message, but the data holds {len(messages)}"
        )
    return messages[0] if messages else method.input_class()


async def _request_stream(state: _Call, call: StreamCall, requests: AsyncIterator[Message]) -> int:
    failure: list[BaseException] = []

    async def write_all() -> None:
        try:
            async for message in requests:
                if not await call.write(message):
                    return  # the call ended: its status is read below
            await call.done_writing()
        except (InputError, ClientError) as exc:
            failure.append(exc)
            call.cancel()

    async with call:
        writer = asyncio.create_task(write_all(), name="requests")
        try:
            if state.method.kind is MethodKind.CLIENT_STREAM:
                await state.show(call, await call.response())
            else:
                while (message := await call.read()) is not None:
                    await state.show(call, message)
        except UpstreamError as exc:
            await _stop(writer)
            if failure:
                raise failure[0] from exc
            return await state.fail(exc)
        except BaseException:
            await _stop(writer)
            raise
        await _stop(writer)
        if failure:
            raise failure[0]
        await state.finish(call)
    return 0


async def _stop(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _type_names_in_json(value: Any) -> set[str]:
    """Type names of every ``"@type"`` in a request document (Any payloads to resolve)."""
    names: set[str] = set()
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            url = node.get("@type")
            if isinstance(url, str):
                names.add(url.rpartition("/")[2])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def _type_names_in_message(message: Message) -> set[str]:
    """Type names of the ``Any`` values in ``message`` (not inside other Anys)."""
    names: set[str] = set()
    stack = [message]
    while stack:
        node = stack.pop()
        if node.DESCRIPTOR.full_name == _ANY:
            names.add(getattr(node, "type_url", "").rpartition("/")[2])
            continue
        for field, value in node.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                if field.message_type.fields_by_name["value"].message_type is not None:
                    stack.extend(value.values())
            elif field.is_repeated:
                stack.extend(value)
            else:
                stack.append(value)
    names.discard("")
    return names


def _detail_type_names(details_bin: bytes | None) -> Sequence[str]:
    if not details_bin:
        return ()
    try:
        status = status_pb2.Status.FromString(details_bin)
    except Exception:  # undecodable trailer: render_details shows no details for it
        return ()
    names = [detail.type_url.rpartition("/")[2] for detail in status.details]
    return [name for name in names if not _standard(name)]


def _standard(name: str) -> bool:
    """A type the default pool has (google.rpc details): nothing to ask the server for."""
    try:
        descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return False
    return True
