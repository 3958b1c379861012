"""What a call's handlers may read of the running bridge, made once per listener.

Every protocol's ``serve`` gets a :class:`CallEnv`, not the :class:`Bridge`: the
settings a call reads are picked out (and typed) once at start-up, so a handler
reads a field rather than walking ``bridge.settings`` per request, and cannot
reach the route table, discovery or the upstreams' state. The upstream call
goes through :attr:`CallEnv.invoker`, the one lookup by upstream name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from grpc_bridge.bridge import Bridge
from grpc_bridge.settings.http import Cors, Limits, WebSocketSettings
from grpc_bridge.upstream.api import CallInvoker


@dataclass(frozen=True, slots=True)
class CallEnv:
    #: Request size, JSON depth and body-read bounds (``limits:``).
    limits: Limits
    #: A stream ends after this long with no message either way; 0: never (``streams:``).
    idle_timeout_s: float
    #: A REST binding's unknown query parameter is dropped rather than refused (``rest:``).
    ignore_unknown_query: bool
    #: A WebSocket's heartbeat, frame size and compression (``websocket:``).
    websocket: WebSocketSettings
    #: Which origins may open a WebSocket (``cors:``).
    cors: Cors
    #: Set when the bridge stops: long-lived streams end with a terminal frame.
    closing: asyncio.Event
    #: The call invoker of an upstream, by name (UpstreamNotReady if none is configured).
    invoker: Callable[[str], CallInvoker]


def call_env(bridge: Bridge) -> CallEnv:
    """The environment of every call on ``bridge``'s proxy listener."""
    settings = bridge.settings
    return CallEnv(
        limits=settings.limits,
        idle_timeout_s=settings.streams.idle_timeout_s,
        ignore_unknown_query=settings.rest.ignore_unknown_query_parameters,
        websocket=settings.websocket,
        cors=settings.cors,
        closing=bridge.closing,
        invoker=bridge.invoker,
    )


#: The proxy app's call environment (edge/proxy.py sets it with the app).
CALL_ENV = web.AppKey("call_env", CallEnv)
