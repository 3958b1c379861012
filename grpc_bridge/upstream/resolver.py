"""Target names resolved by the bridge itself, so a changed address set can be noticed.

A client that resolves only when a connection is lost (gRPC's own DNS
resolver does) never sends traffic to a scaled-up headless Service from
connections it already has. The bridge therefore resolves names on an
interval itself and hands its pool literal addresses (``ipv4:a:p,b:p``); when
the set changes the pool opens new connections. Resolution goes through an
injectable :data:`Resolve` function: the system resolver in production, a
table in tests.

Several targets become one address list that the pool balances round-robin.
Targets that need no resolution (``unix:``, ``unix-abstract:``,
``ipv4:``/``ipv6:`` lists) are used as written.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

#: ``(ip, port)``
Address = tuple[str, int]
#: ``await resolve(host, port)``: every address of ``host``; raises OSError when it has none.
Resolve = Callable[[str, int], Awaitable[Sequence[Address]]]


class ResolveError(Exception):
    """A target name did not resolve (the message names it)."""


async def system_resolve(host: str, port: int) -> list[Address]:
    """The operating system's resolver (``getaddrinfo`` in a worker thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [(str(info[4][0]), int(info[4][1])) for info in infos]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One configured target. ``host`` is None when gRPC must resolve it itself."""

    raw: str
    host: str | None
    port: int

    @property
    def is_name(self) -> bool:
        """A DNS name (not an IP literal): worth resolving again later."""
        return self.host is not None and _ip(self.host) is None

    @property
    def authority(self) -> str:
        """What gRPC would send as ``:authority`` for this target."""
        if self.host is None:
            return self.raw
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_target(target: str) -> Endpoint:
    """Split ``HOST:PORT``, ``[IPV6]:PORT`` or ``dns:///HOST:PORT``; other forms stay opaque."""
    if target.startswith("dns:///"):
        rest = target.removeprefix("dns:///")
    elif target.startswith(_OPAQUE):
        return Endpoint(target, None, 0)
    else:
        rest = target
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return Endpoint(target, None, 0)
    return Endpoint(target, host.removeprefix("[").removesuffix("]"), int(port))


# After dns:/// is handled: dns://server/ (its own DNS server) and address lists.
_OPAQUE = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:")


@dataclass(frozen=True, slots=True)
class ConnectionTargets:
    """What the connections of one generation connect to."""

    #: gRPC target strings; connections are spread over them (usually exactly one).
    targets: tuple[str, ...]
    #: Default ``:authority`` (and TLS name) for these targets, None for gRPC's own.
    authority: str | None
    #: The resolved addresses, for introspection (empty when gRPC resolves).
    addresses: tuple[str, ...] = ()


def unresolved(endpoints: Sequence[Endpoint]) -> ConnectionTargets:
    """The targets as configured, for gRPC to resolve (fallback and opaque forms)."""
    ips = [_ip(e.host) if e.host else None for e in endpoints]
    if len(endpoints) > 1 and all(ips):
        # Literal addresses only: one list that round_robin balances in each channel.
        addresses = [(str(ip), e.port) for ip, e in zip(ips, endpoints, strict=True)]
        return ConnectionTargets(
            (address_list(addresses),),
            endpoints[0].authority,
            tuple(_format(a) for a in addresses),
        )
    return ConnectionTargets(tuple(e.raw for e in endpoints), None)


async def resolve_targets(
    endpoints: Sequence[Endpoint], resolve: Resolve, timeout: float
) -> ConnectionTargets:
    """Every endpoint resolved to addresses; ResolveError names the one that failed."""
    if any(e.host is None for e in endpoints):
        return unresolved(endpoints)
    addresses: list[Address] = []
    for endpoint in endpoints:
        assert endpoint.host is not None
        if not endpoint.is_name:
            addresses.append((endpoint.host, endpoint.port))
            continue
        try:
            async with asyncio.timeout(timeout):
                found = await resolve(endpoint.host, endpoint.port)
        except TimeoutError as exc:
            raise ResolveError(f"resolving {endpoint.host!r} took over {timeout:g}s") from exc
        except (OSError, UnicodeError) as exc:
            # UnicodeError: the idna codec refuses an empty or over-long label.
            raise ResolveError(f"cannot resolve {endpoint.host!r}: {exc}") from exc
        if not found:
            raise ResolveError(f"{endpoint.host!r} resolved to no address")
        addresses.extend(found)
    unique = sorted(set(addresses), key=_sort_key)
    return ConnectionTargets(
        (address_list(unique),), endpoints[0].authority, tuple(_format(a) for a in unique)
    )


def address_list(addresses: Sequence[Address]) -> str:
    """One gRPC target naming every address: ``ipv4:`` when it can, else ``ipv6:``.

    gRPC has no scheme for a mixed list, so IPv4 addresses join an IPv6 list in
    their IPv4-mapped form (``::ffff:a.b.c.d``); gRPC connects to those over
    IPv4 (tcp_client_posix maps them back when the socket is not dual-stack).
    """
    if all(_is_v4(host) for host, _ in addresses):
        return "ipv4:" + ",".join(f"{host}:{port}" for host, port in addresses)
    mapped = (f"::ffff:{host}" if _is_v4(host) else host for host, _ in addresses)
    return "ipv6:" + ",".join(
        f"[{host}]:{port}" for host, (_, port) in zip(mapped, addresses, strict=True)
    )


def _is_v4(host: str) -> bool:
    ip = _ip(host)
    return ip is not None and ip.version == 4


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _format(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _sort_key(address: Address) -> tuple[int, str, int]:
    ip = _ip(address[0])
    return (ip.version if ip else 0, address[0], address[1])
