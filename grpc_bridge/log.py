"""structlog set-up: JSON lines in production, readable console output on a TTY."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _dumps(obj: Any, default: Any = None) -> bytes:
    try:
        return orjson.dumps(obj, default=default or str)
    except orjson.JSONEncodeError:
        # A str orjson refuses (lone surrogates: header bytes aiohttp decoded with
        # surrogateescape); the line must still be written, with them escaped.
        return json.dumps(obj, default=default or str, ensure_ascii=False).encode(
            "utf-8", "backslashreplace"
        )


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog for the process; called once by the CLI (tests keep the defaults)."""
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    logger_factory: Any
    if console:
        processors += [
            structlog.processors.StackInfoRenderer(),
            structlog.dev.ConsoleRenderer(colors=out.isatty()),
        ]
        logger_factory = structlog.PrintLoggerFactory(out)
    else:
        # Bytes straight from orjson to the binary stream: no str round trip per line,
        # which matters for the one canonical line every request writes.
        processors += [
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ]
        binary: Any = out.buffer if hasattr(out, "buffer") else out
        logger_factory = structlog.BytesLoggerFactory(binary)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=logger_factory,
        # Module-level loggers resolve their configuration once instead of per call.
        cache_logger_on_first_use=True,
    )
    # aiohttp's access log would duplicate the canonical request line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
