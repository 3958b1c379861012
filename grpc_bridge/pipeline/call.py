"""A call's metadata and deadline from its request's headers, for every protocol.

Functions on plain values (header pairs, a case-insensitive mapping), so the
lean HTTP/1.1 edge calls the same ones as aiohttp's; ``call_*`` read them off
an aiohttp request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiohttp import web
from multidict import istr

from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.upstream.deadlines import effective_timeout, parse_timeout
from grpc_bridge.upstream.metadata import ClientInfo, Metadata, MetadataPolicy, to_metadata

_GRPC_TIMEOUT, _CONNECT_TIMEOUT = istr("Grpc-Timeout"), istr("Connect-Timeout-Ms")


def metadata_for(
    headers: Iterable[tuple[str, str]], client: ClientInfo, request_id: str, policy: MetadataPolicy
) -> Metadata:
    """The call's metadata from the request's headers (as parsed: name, value pairs)."""
    return to_metadata(headers, policy, client, request_id)


def call_metadata(request: web.Request, ctx: RequestContext, policy: MetadataPolicy) -> Metadata:
    client = ClientInfo(peer=request.remote, host=request.host, scheme=request.scheme)
    return metadata_for(request.headers.items(), client, ctx.request_id, policy)


def timeout_for(plan: MethodPlan, headers: Mapping[str, str]) -> float:
    """The deadline of a call from its (case-insensitive) timeout headers."""
    requested = parse_timeout(headers.get(_GRPC_TIMEOUT), headers.get(_CONNECT_TIMEOUT))
    return effective_timeout(requested, plan.limits.timeout_s, plan.limits.max_timeout_s)


def call_timeout(request: web.Request, plan: MethodPlan) -> float:
    return timeout_for(plan, request.headers)
