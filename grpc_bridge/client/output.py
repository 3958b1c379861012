"""What the command-line client writes: JSON on stdout, Status JSON and verbose notes on stderr.

JSON is indented when the stream is a terminal and one compact line per
message otherwise, so a piped response stream is NDJSON. ``-v`` notes follow
grpcurl's verbose sections (``Resolved method descriptor:``, ``Request
metadata to send:``, ``Response headers received:``, ``Response trailers
received:``, ``Sent 1 request and received 1 response``) but go to stderr, so
stdout stays machine-readable whatever the flags.

Exit codes are grpcurl's: 0 for OK, 64 + the gRPC code for a non-OK status
(NOT_FOUND → 69, DEADLINE_EXCEEDED → 68), 1 for a failure before or around the
call (no reflection, unknown method, bad request JSON), 2 for bad usage.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import IO, Any

import orjson

from grpc_bridge.status import status_dict, utf8_safe

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "STATUS_EXIT_OFFSET", "Output", "format_metadata"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
#: grpcurl's statusCodeOffset: a non-OK status exits with 64 + its code.
STATUS_EXIT_OFFSET = 64


class Output:
    def __init__(
        self, stdout: IO[bytes], stderr: IO[bytes], *, pretty: bool, pretty_errors: bool
    ) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self._option = orjson.OPT_INDENT_2 if pretty else 0
        self._error_option = orjson.OPT_INDENT_2 if pretty_errors else 0

    def message(self, value: Any) -> None:
        """One response message (already a JSON value), flushed at once for streams."""
        self._stdout.write(orjson.dumps(value, option=self._option) + b"\n")
        self._stdout.flush()

    def status(self, code: int, message: str, details: Sequence[Any]) -> None:
        """The error body the bridge's HTTP side uses: ``{"code", "message", "details"}``."""
        body = status_dict(code, utf8_safe(message), details)
        self._stderr.write(orjson.dumps(body, option=self._error_option) + b"\n")
        self._stderr.flush()

    def error(self, text: str) -> None:
        self.note(f"grpc-bridge: {text}")

    def note(self, text: str) -> None:
        self._stderr.write(text.encode("utf-8", "backslashreplace") + b"\n")
        self._stderr.flush()

    def section(self, title: str, body: str) -> None:
        """One ``-v`` section: a blank line, the title, its lines."""
        self.note(f"\n{title}\n{body}")


def format_metadata(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    """grpcurl's MetadataToString: sorted ``key: value`` lines, ``-bin`` values in base64."""
    if not metadata:
        return "(empty)"
    lines = []
    for key, value in sorted(metadata, key=lambda kv: kv[0]):
        text = base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
        lines.append(f"{key}: {text}")
    return "\n".join(lines)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
