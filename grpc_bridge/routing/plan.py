"""Per-method work done once per discovery snapshot, never per request."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.descriptor_pool import DescriptorPool

from grpc_bridge.codec.json_codec import JsonOptions, MessageCodec
from grpc_bridge.codec.raw import raw_method
from grpc_bridge.discovery.registry import MethodInfo, Schema


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    timeout_s: float
    max_timeout_s: float


@dataclass(frozen=True, slots=True)
class MethodPlan:
    info: MethodInfo
    request_codec: MessageCodec
    response_codec: MessageCodec
    #: The upstream's private pool, to render error details of its own types.
    pool: DescriptorPool
    limits: UpstreamLimits
    #: ``info.full_name`` (``package.Service/Method``), which is built on each access:
    #: every request's log line names it.
    full_name: str = field(init=False)
    #: ``info`` with raw bytes in and out (codec/raw.py), for the binary protocols.
    raw_info: MethodInfo = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "full_name", self.info.full_name)
        object.__setattr__(self, "raw_info", raw_method(self.info))

    @property
    def upstream(self) -> str:
        return self.info.upstream


def plans_for(schema: Schema, options: JsonOptions, limits: UpstreamLimits) -> list[MethodPlan]:
    # Codecs are shared between methods using the same message type.
    codecs: dict[str, MessageCodec] = {}

    def codec(info: MethodInfo, output: bool) -> MessageCodec:
        cls = info.output_class if output else info.input_class
        name = cls.DESCRIPTOR.full_name
        if name not in codecs:
            codecs[name] = MessageCodec(cls, schema.pool, options)
        return codecs[name]

    return [
        MethodPlan(info, codec(info, False), codec(info, True), schema.pool, limits)
        for info in schema.methods.values()
    ]
