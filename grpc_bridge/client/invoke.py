"""``grpc-bridge call``: one RPC of any kind, JSON in and out, through the bridge's call seam.

Every kind goes through :class:`~grpc_bridge.client.grpc_call.GrpcStreamCall`,
the :class:`~grpc_bridge.upstream.api.StreamCall` of grpc.aio calls, so grpc's errors arrive
translated (:class:`~grpc_bridge.errors.UpstreamError` with the code, message,
details trailer and both metadata sets) exactly as the HTTP side sees them:

- unary and server-streaming: the one request is sent with the call;
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

from grpc_bridge.client.grpc_call import GrpcStreamCall
from grpc_bridge.client.output import STATUS_EXIT_OFFSET, Output, format_metadata, plural
from grpc_bridge.client.protoprint import describe
from grpc_bridge.client.requests import InputError, documents
from grpc_bridge.client.session import ClientError, Session
from grpc_bridge.codec.details import render_details
from grpc_bridge.codec.json_codec import JsonOptions, MessageCodec
from grpc_bridge.discovery.registry import MethodInfo, MethodKind
from grpc_bridge.errors import BridgeError, UpstreamError
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

    async def show(self, call: GrpcStreamCall, message: Message) -> None:
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

    async def show_headers(self, call: GrpcStreamCall) -> None:
        if self.verbose and not self._headers_shown:
            self._headers_shown = True
            headers = await call.initial_metadata()
            self.out.section("Response headers received:", format_metadata(headers))

    async def finish(self, call: GrpcStreamCall) -> None:
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
    factory = {
        MethodKind.UNARY: session.channel.unary_unary,
        MethodKind.SERVER_STREAM: session.channel.unary_stream,
        MethodKind.CLIENT_STREAM: session.channel.stream_unary,
        MethodKind.BIDI_STREAM: session.channel.stream_stream,
    }[method.kind]
    multi = factory(
        method.path,
        request_serializer=_serialize,
        response_deserializer=method.output_class.FromString,
    )
    requests = state.requests(lines)
    if method.kind.client_streams:
        return await _request_stream(state, multi, requests, metadata)
    request = await _single_request(method, requests)
    call = GrpcStreamCall(multi(request, metadata=metadata, timeout=session.remaining()))
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


async def _request_stream(
    state: _Call, multi: Any, requests: AsyncIterator[Message], metadata: Metadata
) -> int:
    call = GrpcStreamCall(multi(metadata=metadata, timeout=state.session.remaining()))
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
        except asyncio.CancelledError:
            # grpc.aio raises CancelledError from read() once the writer cancelled the
            # call over a bad request line; a cancellation of this task is re-raised.
            await _stop(writer)
            task = asyncio.current_task()
            if failure and task is not None and not task.cancelling():
                raise failure[0] from None
            raise
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


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


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
