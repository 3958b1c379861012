"""One server reflection stream's answers, from a :class:`ReflectionIndex`, as grpc-go gives them.

- Every answer echoes the request (``original_request``) and its ``host`` as
  ``valid_host``; a symbol, file, extension or type that is not there is an
  in-stream ``error_response`` with NOT_FOUND, and the stream goes on.
- A file is sent with its transitive imports, breadth first, except the
  imports this stream already received (the requested file itself is always
  sent): the stream remembers what it sent.
- A request with no question set ends the stream with INVALID_ARGUMENT.
- Error messages quote a requested name cut to :data:`QUOTED` characters (the
  name is in the echoed request already): an answer is not twice a request.
- An answer stays under ``max_bytes``: the requested file must fit (else
  RESOURCE_EXHAUSTED in an ``error_response``); imports that would not fit
  are left out and not remembered as sent, so the client asks for them by
  name as it does for any import it lacks. ``list_services`` over the bound is
  RESOURCE_EXHAUSTED too.

The messages are grpcio-reflection's v1alpha classes: v1 is wire-identical.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from grpc_reflection.v1alpha import reflection_pb2

from grpc_bridge.discovery.reflection_index import ReflectionIndex
from grpc_bridge.status import Code

__all__ = ["QUOTED", "InvalidRequest", "Request", "Response", "StreamAnswers"]

Request: Any = reflection_pb2.ServerReflectionRequest
Response: Any = reflection_pb2.ServerReflectionResponse

#: Per file in an answer: the repeated field's tag and length prefix, at most.
_FIELD_OVERHEAD = 6
#: The answer's own tags and lengths around the files and the echoed request.
_ANSWER_OVERHEAD = 32
#: The most characters of a requested name an error message quotes.
QUOTED = 200


class InvalidRequest(Exception):
    """A request the stream cannot answer: the call ends with ``code``."""

    def __init__(self, message: str, code: Code = Code.INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.code = code


class StreamAnswers:
    """The answers of one stream (it remembers the files it sent)."""

    __slots__ = ("_index", "_max_bytes", "_sent")

    def __init__(self, index: ReflectionIndex, max_bytes: int) -> None:
        self._index = index
        self._max_bytes = max_bytes
        self._sent: set[str] = set()

    def answer(self, request: Any) -> Any:
        index = self._index
        response = Response(valid_host=request.host, original_request=request)
        which = request.WhichOneof("message_request")
        if which == "file_by_filename":
            name = request.file_by_filename
            self._files(response, name if name in index.files else None, f"file {_quoted(name)}")
        elif which == "file_containing_symbol":
            symbol = request.file_containing_symbol
            self._files(response, index.symbols.get(symbol), f"symbol {_quoted(symbol)}")
        elif which == "file_containing_extension":
            extension = request.file_containing_extension
            key = (extension.containing_type, extension.extension_number)
            what = f"extension {key[1]} of {_quoted(key[0])}"
            self._files(response, index.extensions.get(key), what)
        elif which == "all_extension_numbers_of_type":
            name = request.all_extension_numbers_of_type
            numbers = index.extension_numbers(name)
            if numbers is None:
                _error(response, Code.NOT_FOUND, f"message type {_quoted(name)} not found")
            else:
                found = response.all_extension_numbers_response
                found.base_type_name = name
                found.extension_number.extend(numbers)
        elif which == "list_services":
            listed = response.list_services_response.service
            listed.extend(reflection_pb2.ServiceResponse(name=s) for s in index.services)
            if response.ByteSize() > self._max_bytes:
                response.ClearField("list_services_response")
                _error(response, Code.RESOURCE_EXHAUSTED, self._over("the service list"))
        else:
            raise InvalidRequest("invalid MessageRequest: none of its questions is set")
        if response.ByteSize() > self._max_bytes:
            # Only a request near the bound itself gets here: every answer echoes it.
            raise InvalidRequest(
                self._over(f"the answer to a {request.ByteSize()}-byte request"),
                Code.RESOURCE_EXHAUSTED,
            )
        return response

    def _files(self, response: Any, root: str | None, what: str) -> None:
        if root is None:
            _error(response, Code.NOT_FOUND, f"{what} not found")
            return
        files = self._index.files
        budget = self._max_bytes - response.ByteSize() - _ANSWER_OVERHEAD
        first = files[root].data
        if len(first) + _FIELD_OVERHEAD > budget:
            _error(response, Code.RESOURCE_EXHAUSTED, self._over(f"file {root!r}"))
            return
        budget -= len(first) + _FIELD_OVERHEAD
        out = [first]
        self._sent.add(root)
        seen = {root}
        queue = deque(files[root].dependencies)
        while queue:
            name = queue.popleft()
            if name in seen:
                continue
            seen.add(name)
            file = files[name]
            queue.extend(file.dependencies)
            if name in self._sent or len(file.data) + _FIELD_OVERHEAD > budget:
                continue
            budget -= len(file.data) + _FIELD_OVERHEAD
            out.append(file.data)
            self._sent.add(name)
        response.file_descriptor_response.file_descriptor_proto.extend(out)

    def _over(self, what: str) -> str:
        return f"{what} does not fit in a {self._max_bytes}-byte message"


def _quoted(name: str) -> str:
    """``name`` quoted for an error message, cut to :data:`QUOTED` characters."""
    if len(name) <= QUOTED:
        return repr(name)
    return f"{name[:QUOTED]!r}... ({len(name)} characters)"


def _error(response: Any, code: Code, message: str) -> None:
    response.error_response.error_code = int(code)
    response.error_response.error_message = message
