"""A pool of gRPC channels to one upstream, handed out round-robin.

Each channel is its own HTTP/2 connection (``grpc.use_local_subchannel_pool``
stops grpc from sharing subchannels between channels of one process), so a
pool of N spreads streams over N connections instead of N logical channels on
one socket. Channels must be created inside the running event loop.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import grpc.aio

from grpc_bridge.settings import Upstream

# Reconnect quickly after an upstream restart: grpc's default backoff grows to
# 120 s, which keeps a sidecar failing long after its neighbour is back.
_MIN_RECONNECT_MS = 250
_MAX_RECONNECT_MS = 5_000
_FAILING = grpc.ChannelConnectivity.TRANSIENT_FAILURE


def channel_target(upstream: Upstream) -> tuple[list[str], bool]:
    """The grpc target string(s) and whether gRPC balances inside each channel.

    Several plain IP targets become one ``ipv4:a,b`` (or ``ipv6:``) target that
    gRPC's round_robin policy balances; other lists get one channel per target.
    """
    targets = upstream.targets
    if len(targets) == 1:
        return [targets[0]], targets[0].startswith("dns:")
    if all(_is_ipv4(t) for t in targets):
        return ["ipv4:" + ",".join(targets)], True
    if all(t.startswith("[") for t in targets):
        return ["ipv6:" + ",".join(targets)], True
    return list(targets), False


def _is_ipv4(target: str) -> bool:
    host, _, port = target.rpartition(":")
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts) and port.isdigit()


def channel_options(upstream: Upstream, index: int) -> list[tuple[str, Any]]:
    ka = upstream.keepalive
    options: list[tuple[str, Any]] = [
        ("grpc.use_local_subchannel_pool", 1),
        # Distinct args also keep grpc from folding the pool into one channel.
        ("grpc_bridge.channel_index", index),
        ("grpc.keepalive_time_ms", int(ka.time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(ka.timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", int(ka.permit_without_calls)),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", _MIN_RECONNECT_MS),
        ("grpc.min_reconnect_backoff_ms", _MIN_RECONNECT_MS),
        ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_MS),
        ("grpc.max_send_message_length", upstream.max_send_message_bytes),
        ("grpc.max_receive_message_length", upstream.max_receive_message_bytes),
        ("grpc.service_config", json.dumps(_service_config())),
    ]
    if upstream.authority:
        options.append(("grpc.default_authority", upstream.authority))
    if upstream.tls.enabled and upstream.tls.server_name:
        options.append(("grpc.ssl_target_name_override", upstream.tls.server_name))
    return options


def _service_config() -> dict[str, Any]:
    return {"loadBalancingConfig": [{"round_robin": {}}]}


def _credentials(upstream: Upstream) -> grpc.ChannelCredentials | None:
    tls = upstream.tls
    if not tls.enabled:
        return None

    def read(path: Any) -> bytes | None:
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    return grpc.ssl_channel_credentials(
        root_certificates=read(tls.ca_file),
        private_key=read(tls.key_file),
        certificate_chain=read(tls.cert_file),
    )


class ChannelPool:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._channels: list[grpc.aio.Channel] = []
        self._cycle: Iterator[int] = iter(())

    def open(self) -> None:
        """Create the channels; call from inside the running event loop."""
        targets, _ = channel_target(self.upstream)
        count = max(self.upstream.pool_size, len(targets))
        credentials = _credentials(self.upstream)
        for i in range(count):
            target = targets[i % len(targets)]
            options = channel_options(self.upstream, i)
            if credentials is None:
                channel = grpc.aio.insecure_channel(target, options=options)
            else:
                channel = grpc.aio.secure_channel(target, credentials, options=options)
            self._channels.append(channel)
        self._cycle = itertools.cycle(range(count))

    @property
    def size(self) -> int:
        return len(self._channels)

    def pick(self) -> tuple[int, grpc.aio.Channel]:
        """Next channel round-robin, passing over ones in reconnect backoff.

        A channel in TRANSIENT_FAILURE fails calls at once (no wait-for-ready)
        until its backoff timer fires, even after the upstream is back; while
        another channel is connected, sending it the call avoids a needless 503.
        """
        for _ in range(len(self._channels)):
            index = next(self._cycle)
            channel = self._channels[index]
            if channel.get_state(try_to_connect=False) is not _FAILING:
                return index, channel
        index = next(self._cycle)
        return index, self._channels[index]

    def connect(self) -> None:
        """Start connecting every channel (after discovery), so the first calls don't wait."""
        for channel in self._channels:
            channel.get_state(try_to_connect=True)

    def states(self) -> list[str]:
        """Connectivity state names without triggering a connection attempt."""
        return [c.get_state(try_to_connect=False).name for c in self._channels]

    def usable(self) -> bool:
        return any(
            state != grpc.ChannelConnectivity.SHUTDOWN.name for state in self.states()
        ) and not all(
            state == grpc.ChannelConnectivity.TRANSIENT_FAILURE.name for state in self.states()
        )

    @property
    def channels(self) -> Sequence[grpc.aio.Channel]:
        return tuple(self._channels)

    async def close(self, grace: float | None = None) -> None:
        channels, self._channels = self._channels, []
        for channel in reversed(channels):
            await channel.close(grace)
