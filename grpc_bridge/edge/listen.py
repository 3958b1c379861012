"""Listener addresses: binding one, and reaching one from this host.

A bind failure becomes one line naming the address, the setting and the cause:
uvloop's and asyncio's bind errors read differently and quote a tuple; what an
operator needs is which listener, which setting moves it, and why. The CLI
prints the line and exits 1 (cli.py).
"""

from __future__ import annotations

import errno
import os

from aiohttp import web


class ListenError(OSError):
    """A listener could not bind: one line naming the address, the setting and the cause."""


def listen_error(exc: OSError, what: str, host: str, port: int) -> ListenError:
    """``exc`` as the line an operator needs (uvloop's and asyncio's messages differ)."""
    cause = os.strerror(exc.errno) if exc.errno else str(exc)
    hint = ""
    if exc.errno == errno.EADDRINUSE:
        hint = " (another process listens there: stop it or choose another port)"
    return ListenError(f"cannot listen on {host}:{port} for {what}: {cause.lower()}{hint}")


async def start_site(site: web.BaseSite, what: str, host: str, port: int) -> None:
    try:
        await site.start()
    except OSError as exc:
        raise listen_error(exc, what, host, port) from exc


def loopback_host(host: str) -> str:
    """The address to connect to for a listener bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host.strip("[]")


def url_host(host: str) -> str:
    """``host`` as written in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host
