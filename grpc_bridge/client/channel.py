"""The command-line client's grpc.aio channel, built from the upstream's settings.

Built from the same settings as ``serve``'s connections, so TLS files,
server-name override, authority, keepalive and message-size limits behave
alike. grpc resolves the target itself (one connection per command).
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import grpc.aio

from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.resolver import parse_target, unresolved
from grpc_bridge.upstream.tls import TlsMaterial, load_tls


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def channel_options(upstream: Upstream, default_authority: str | None) -> list[tuple[str, Any]]:
    ka = upstream.keepalive
    rc = upstream.reconnect
    options: list[tuple[str, Any]] = [
        ("grpc.keepalive_time_ms", _ms(ka.time_s)),
        ("grpc.keepalive_timeout_ms", _ms(ka.timeout_s)),
        ("grpc.keepalive_permit_without_calls", int(ka.permit_without_calls)),
        ("grpc.initial_reconnect_backoff_ms", _ms(rc.initial_backoff_s)),
        ("grpc.max_reconnect_backoff_ms", _ms(rc.max_backoff_s)),
        # Despite its name, the minimum time one connection attempt may take.
        ("grpc.min_reconnect_backoff_ms", _ms(rc.connect_timeout_s)),
        ("grpc.max_send_message_length", upstream.max_send_message_bytes),
        ("grpc.max_receive_message_length", upstream.max_receive_message_bytes),
        (
            "grpc.service_config",
            json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}),
        ),
        # Ours is the only service config: no DNS TXT lookups for one.
        ("grpc.service_config_disable_resolution", 1),
    ]
    server_name = upstream.tls.server_name if upstream.tls.enabled else None
    # The :authority is also the name TLS verifies unless tls.server_name
    # overrides it; with an override gRPC also checks that each call's
    # :authority matches the certificate, so the override is the natural
    # default authority (an address-based one would fail that check).
    authority = upstream.authority or server_name or default_authority
    if authority:
        options.append(("grpc.default_authority", authority))
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


def credentials(material: TlsMaterial) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca, private_key=material.key, certificate_chain=material.cert
    )


def open_channel(upstream: Upstream) -> grpc.aio.Channel:
    """A channel to the upstream's targets (several literal addresses: balanced round-robin)."""
    targets = unresolved(tuple(parse_target(t) for t in upstream.targets))
    options = channel_options(upstream, targets.authority)
    compression = grpc.Compression.Gzip if upstream.compression == "gzip" else None
    material = load_tls(upstream.tls)
    target = targets.targets[0]
    if material is None:
        return grpc.aio.insecure_channel(target, options, compression)
    return grpc.aio.secure_channel(target, credentials(material), options, compression)
