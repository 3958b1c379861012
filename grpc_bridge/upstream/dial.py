"""What one upstream's connections are dialled with: addresses, ``:authority``, TLS.

A :class:`ConnectionPlan` is what a generation of connections is built from;
when it changes (DNS answered other addresses, certificates were rotated on
disk) the pool opens new connections.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from grpc_bridge.settings import Upstream
from grpc_bridge.upstream.resolver import ConnectionTargets
from grpc_bridge.upstream.tls import TlsMaterial

_DEFAULT_PORT = "443"


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    targets: ConnectionTargets
    tls: TlsMaterial | None = None
    #: False: TLS without checking the server's certificate or name (the CLI's
    #: ``--insecure``, for servers with self-signed certificates); never from settings.
    verify: bool = True


@dataclass(frozen=True, slots=True)
class Address:
    """A TCP ``host``/``port``, or a unix socket ``path``."""

    host: str = ""
    port: int = 0
    path: str | None = None

    def __str__(self) -> str:
        if self.path is not None:
            if self.path.startswith("\0"):
                return f"unix-abstract:{self.path[1:]}"
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def addresses_of(targets: ConnectionTargets) -> list[Address]:
    """The addresses behind gRPC target strings (names are resolved when dialled)."""
    out: list[Address] = []
    for target in targets.targets:
        if target.startswith(("ipv4:", "ipv6:")):
            for item in target[5:].split(","):
                host, _, port = item.rpartition(":")
                host = host.removeprefix("[").removesuffix("]")
                host = host.removeprefix("::ffff:") if "." in host else host
                out.append(Address(host, int(port)))
        elif target.startswith("unix:"):
            path = target.removeprefix("unix:")
            path = path.removeprefix("//") if path.startswith("///") else path
            out.append(Address(path=path))
        elif target.startswith("unix-abstract:"):
            # Linux's abstract namespace: the name after a NUL byte, no file.
            out.append(Address(path="\0" + target.removeprefix("unix-abstract:")))
        elif target.startswith("dns:") and not target.startswith("dns:///"):
            # The settings refuse it: a DNS server of its own is not queried.
            raise ValueError(f"{target!r}: a DNS server of its own is not supported")
        else:
            rest = target.removeprefix("dns:///")
            host, sep, port = rest.rpartition(":")
            if not sep or not port.isdigit():
                host, port = rest, _DEFAULT_PORT  # gRPC's dns resolver's default
            out.append(Address(host.removeprefix("[").removesuffix("]"), int(port)))
    return out


def authority_of(upstream: Upstream, targets: ConnectionTargets) -> str:
    """The ``:authority`` grpc would send: ``authority``, else ``tls.server_name``, else the
    first target's ``HOST:PORT`` (``localhost`` for a unix socket)."""
    server_name = upstream.tls.server_name if upstream.tls.enabled else None
    authority = upstream.authority or server_name or targets.authority
    if authority:
        return authority
    target = targets.targets[0]
    if target.startswith(("unix:", "unix-abstract:")):
        return "localhost"
    return target.removeprefix("dns:///")


def tls_context(upstream: Upstream, plan: ConnectionPlan) -> ssl.SSLContext | None:
    material = plan.tls
    if material is None:
        return None
    context = ssl.create_default_context(
        cadata=material.ca.decode("ascii", "replace") if material.ca is not None else None
    )
    if upstream.tls.cert_file is not None and upstream.tls.key_file is not None:
        # Paths, not the bytes: the stdlib loads a chain only from files. A
        # rotation between the read and here is noticed by the next refresh.
        context.load_cert_chain(upstream.tls.cert_file, upstream.tls.key_file)
    context.set_alpn_protocols(["h2"])
    if not plan.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def server_name_of(upstream: Upstream, authority: str) -> str:
    """The name TLS verifies: ``tls.server_name``, else the authority's host."""
    if upstream.tls.enabled and upstream.tls.server_name:
        return upstream.tls.server_name
    if ":" in authority and not authority.endswith("]"):
        return authority.rpartition(":")[0].removeprefix("[").removesuffix("]")
    return authority
