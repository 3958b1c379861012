"""A pool of gRPC channels to one upstream, handed out round-robin, rebuilt when its plan changes.

Each channel is its own HTTP/2 connection per address (``grpc.use_local_subchannel_pool``
stops grpc from sharing subchannels between channels of one process), so a
pool of N spreads calls over N connections instead of N logical channels on
one socket. Inside each channel gRPC's ``round_robin`` policy balances over
every address of the upstream.

What a set of channels is built from is a :class:`ChannelPlan`: the resolved
addresses, the unary methods that get a retry policy, and the TLS material.
When any of these changes the pool builds a new generation of channels and
swaps it in; the old channels stop taking calls at once but get ``retire_grace``
seconds to finish the ones in flight (``grpc.aio.Channel.close(grace)``).
Channels must be created inside the running event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from grpc_bridge.errors import UpstreamNotReady
from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.resolver import ChannelTargets
from grpc_bridge.upstream.tls import TlsMaterial

_FAILING = grpc.ChannelConnectivity.TRANSIENT_FAILURE
_SHUTDOWN = grpc.ChannelConnectivity.SHUTDOWN
_RETIRE_MARGIN_S = 5.0


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    targets: ChannelTargets
    #: ``package.Service/Method`` of every unary method: they, and only they, are retried.
    unary_methods: frozenset[str] = frozenset()
    tls: TlsMaterial | None = None


def service_config(upstream: Upstream, unary_methods: Iterable[str]) -> dict[str, Any]:
    """gRPC service config: round_robin, plus a retry policy naming the unary methods.

    A methodConfig applies to the methods it names (A6); streaming methods are
    left out on purpose: a retried stream could replay messages the upstream
    already acted on.
    """
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    retries = upstream.retries
    names = sorted(unary_methods)
    if retries.max_attempts > 1 and names:
        config["methodConfig"] = [
            {
                "name": [
                    {"service": service, "method": method}
                    for service, _, method in (n.partition("/") for n in names)
                ],
                "retryPolicy": {
                    "maxAttempts": retries.max_attempts,
                    "initialBackoff": _duration(retries.initial_backoff_s),
                    "maxBackoff": _duration(retries.max_backoff_s),
                    "backoffMultiplier": retries.backoff_multiplier,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
        config["retryThrottling"] = {
            "maxTokens": retries.throttle.max_tokens,
            "tokenRatio": retries.throttle.token_ratio,
        }
    return config


def _duration(seconds: float) -> str:
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def channel_options(
    upstream: Upstream, plan: ChannelPlan, channel_id: int
) -> list[tuple[str, Any]]:
    ka = upstream.keepalive
    rc = upstream.reconnect
    options: list[tuple[str, Any]] = [
        ("grpc.use_local_subchannel_pool", 1),
        # Distinct args also keep grpc from folding the pool into one channel.
        ("grpc_bridge.channel_id", channel_id),
        ("grpc.keepalive_time_ms", _ms(ka.time_s)),
        ("grpc.keepalive_timeout_ms", _ms(ka.timeout_s)),
        ("grpc.keepalive_permit_without_calls", int(ka.permit_without_calls)),
        ("grpc.initial_reconnect_backoff_ms", _ms(rc.initial_backoff_s)),
        ("grpc.max_reconnect_backoff_ms", _ms(rc.max_backoff_s)),
        # Despite its name, the minimum time one connection attempt may take.
        ("grpc.min_reconnect_backoff_ms", _ms(rc.connect_timeout_s)),
        ("grpc.max_send_message_length", upstream.max_send_message_bytes),
        ("grpc.max_receive_message_length", upstream.max_receive_message_bytes),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(service_config(upstream, plan.unary_methods))),
        # Ours is the only service config: no DNS TXT lookups for one.
        ("grpc.service_config_disable_resolution", 1),
    ]
    server_name = upstream.tls.server_name if upstream.tls.enabled else None
    # The :authority is also the name TLS verifies unless tls.server_name
    # overrides it; with an override gRPC also checks that each call's
    # :authority matches the certificate, so the override is the natural
    # default authority (an address-based one would fail that check).
    authority = upstream.authority or server_name or plan.targets.authority
    if authority:
        options.append(("grpc.default_authority", authority))
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


class ChannelPool:
    def __init__(
        self, upstream: Upstream, *, retire_grace: float | None = None, size: int | None = None
    ) -> None:
        self.upstream = upstream
        #: Channels per generation (``pool_size`` unless overridden).
        self._size = upstream.pool_size if size is None else size
        self.plan: ChannelPlan | None = None
        #: Incremented by every (re)build; 0 before the first.
        self.generation = 0
        self.built_at: float | None = None
        # Unary calls end by their deadline (at most max_timeout_s) before the
        # old channel is closed under them.
        self._retire_grace = (
            upstream.max_timeout_s + _RETIRE_MARGIN_S if retire_grace is None else retire_grace
        )
        self._channels: list[tuple[int, grpc.aio.Channel]] = []
        self._ids = itertools.count()
        self._next = 0
        self._retiring: dict[asyncio.Task[None], grpc.aio.Channel] = {}
        self._closed = False

    def open(self, plan: ChannelPlan) -> None:
        """Create the first channels; call from inside the running event loop."""
        self._build(plan)

    def rebuild(self, plan: ChannelPlan) -> bool:
        """Swap in channels built from ``plan`` if it differs; True when it did.

        Calls in flight on the old channels finish (up to ``retire_grace``);
        new calls go to the new ones at once.
        """
        if self._closed or plan == self.plan:
            return False
        old = self._channels
        self._build(plan)
        self.connect()
        for _, channel in old:
            task = asyncio.create_task(channel.close(self._retire_grace), name="retire-channel")
            self._retiring[task] = channel
            task.add_done_callback(self._forget_retired)
        return True

    def _forget_retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.pop(task, None)

    def _build(self, plan: ChannelPlan) -> None:
        targets = plan.targets.targets
        count = max(self._size, len(targets))
        credentials = plan.tls.credentials() if plan.tls is not None else None
        compression = grpc.Compression.Gzip if self.upstream.compression == "gzip" else None
        channels = []
        for i in range(count):
            channel_id = next(self._ids)
            target = targets[i % len(targets)]
            options = channel_options(self.upstream, plan, channel_id)
            if credentials is None:
                channel = grpc.aio.insecure_channel(target, options, compression)
            else:
                channel = grpc.aio.secure_channel(target, credentials, options, compression)
            channels.append((channel_id, channel))
        self._channels = channels
        self._next = 0
        self.plan = plan
        self.generation += 1
        self.built_at = time.time()

    @property
    def size(self) -> int:
        return len(self._channels)

    def pick(self) -> tuple[int, grpc.aio.Channel]:
        """Next channel round-robin, passing over ones in reconnect backoff.

        The int is unique to the channel for the life of the process, so a
        cache keyed by it never hands out a retired channel.

        A channel in TRANSIENT_FAILURE fails calls at once (no wait-for-ready)
        until its backoff timer fires, even after the upstream is back; while
        another channel is connected, sending it the call avoids a needless 503.
        """
        count = len(self._channels)
        if count == 0:
            raise UpstreamNotReady(f"upstream {self.upstream.name!r} is shutting down")
        for _ in range(count):
            index = self._next
            self._next = (index + 1) % count
            entry = self._channels[index]
            if entry[1].get_state(try_to_connect=False) is not _FAILING:
                return entry
        entry = self._channels[self._next]
        self._next = (self._next + 1) % count
        return entry

    def connect(self) -> None:
        """Start connecting every channel, so the first calls don't wait."""
        for _, channel in self._channels:
            channel.get_state(try_to_connect=True)

    def states(self) -> list[str]:
        """Connectivity state names without triggering a connection attempt."""
        return [c.get_state(try_to_connect=False).name for _, c in self._channels]

    def state_map(self) -> dict[int, str]:
        """Channel id → connectivity state name, for change logging."""
        return {i: c.get_state(try_to_connect=False).name for i, c in self._channels}

    def usable(self) -> bool:
        """Some channel can take a call now or soon (not every one failing or shut down)."""
        return any(
            c.get_state(try_to_connect=False) not in (_FAILING, _SHUTDOWN)
            for _, c in self._channels
        )

    @property
    def retiring(self) -> int:
        """Old channels still finishing their calls."""
        return len(self._retiring)

    async def close(self, grace: float | None = None) -> None:
        """Close every channel, newest last-opened first; retiring ones are cut short."""
        self._closed = True
        channels, self._channels = self._channels, []
        for _, channel in reversed(channels):
            await channel.close(grace)
        retiring = list(self._retiring.items())
        for task, channel in retiring:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await channel.close(None)
