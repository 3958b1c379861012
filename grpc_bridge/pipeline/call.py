"""A call's metadata and deadline from its request's headers, for every protocol.

Functions on plain values (header pairs, a case-insensitive mapping), so the
lean HTTP/1.1 edge calls the same ones as aiohttp's; ``call_*`` read them off
an aiohttp request. :func:`open_call` and :func:`open_stream_call` are the
prologue every protocol's handler starts with: the metadata (checked first,
before any body is read), the deadline and the upstream's invoker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import web
from multidict import istr

from grpc_bridge.pipeline.context import RequestContext
from grpc_bridge.pipeline.env import CallEnv
from grpc_bridge.routing.plan import MethodPlan
from grpc_bridge.upstream.api import CallInvoker
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


def stream_deadline(requested: float | None, plan: MethodPlan) -> float | None:
    """Streams have no default deadline (spec §7): only the client's, clamped."""
    return None if requested is None else min(requested, plan.limits.max_timeout_s)


def stream_timeout(request: web.Request, plan: MethodPlan) -> float | None:
    """The deadline of a call whose answer streams, from its timeout headers."""
    requested = parse_timeout(
        request.headers.get(_GRPC_TIMEOUT), request.headers.get(_CONNECT_TIMEOUT)
    )
    return stream_deadline(requested, plan)


#: A call's deadline: always one for a call answered once, maybe none for a stream.
Deadline = TypeVar("Deadline", float, float | None)


@dataclass(frozen=True, slots=True)
class OpenCall(Generic[Deadline]):
    """What a handler calls its upstream with."""

    invoker: CallInvoker
    metadata: Metadata
    timeout: Deadline


def open_call(
    request: web.Request,
    plan: MethodPlan,
    env: CallEnv,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> OpenCall[float]:
    """The prologue of a call answered with one message (unary, client-streaming): its
    deadline is the client's, clamped, or the method's default. Headers are checked
    here, before the body is read: a bad header costs no upload."""
    metadata = call_metadata(request, ctx, policy)
    return OpenCall(env.invoker(plan.upstream), metadata, call_timeout(request, plan))


def open_stream_call(
    request: web.Request,
    plan: MethodPlan,
    env: CallEnv,
    ctx: RequestContext,
    policy: MetadataPolicy,
) -> OpenCall[float | None]:
    """The prologue of a call whose answer streams: no deadline unless the client sets one."""
    metadata = call_metadata(request, ctx, policy)
    return OpenCall(env.invoker(plan.upstream), metadata, stream_timeout(request, plan))
