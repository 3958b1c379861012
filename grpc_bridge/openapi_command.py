"""``grpc-bridge openapi``: the admin listener's OpenAPI document, written to stdout.

It runs the daemon's own discovery (:class:`grpc_bridge.bridge.Bridge`:
reflection or descriptor sets, service filters, ``routes:``, ``json.*``)
without opening any listener, waits until every upstream is discovered, and
prints the document ``GET /v1/openapi.json`` would serve. Exit 1 when an
upstream can't be discovered within ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grpc_bridge.settings import Settings

__all__ = ["add_arguments", "run_openapi"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=["json", "yaml"], default="json", help="output format (default json)"
    )
    parser.add_argument(
        "--only", metavar="NAME", help="only this upstream's methods (as ?upstream=NAME does)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="how long to wait for discovery (default: discovery.timeout_s)",
    )


async def _document(settings: Settings, args: argparse.Namespace) -> bytes:
    # Here, not at import: every other command parses its flags without loading these.
    from grpc_bridge.bridge import Bridge
    from grpc_bridge.edge.listen import loopback_host, url_host
    from grpc_bridge.openapi import build_document, render

    if args.only is not None and args.only not in {u.name for u in settings.upstreams}:
        raise LookupError(f"no upstream named {args.only!r}")
    bridge = Bridge(settings)
    await bridge.start()
    try:
        timeout = args.timeout if args.timeout is not None else settings.discovery.timeout_s
        try:
            await asyncio.wait_for(bridge.wait_discovered(), timeout)
        except TimeoutError:
            failed = [
                f"{s.name}: {s.last_error or s.error or 'no answer'}"
                for s in bridge.upstreams.values()
                if s.schema is None
            ]
            raise LookupError(
                f"discovery did not finish in {timeout:g} s ({'; '.join(failed)})"
            ) from None
        files = [s.schema.files for s in bridge.upstreams.values() if s.schema is not None]
        listen = settings.listen
        document = build_document(
            bridge.routes,
            bridge.json_options,
            upstream=args.only,
            files=files,
            server_url=f"http://{url_host(loopback_host(listen.host))}:{listen.port}",
        )
        return render(document, args.format)
    finally:
        await bridge.stop()


def run_openapi(settings: Settings, args: argparse.Namespace) -> int:
    from grpc_bridge.runloop import run

    async def main() -> int:
        try:
            body = await _document(settings, args)
        except LookupError as exc:
            print(f"grpc-bridge: openapi: {exc}", file=sys.stderr)
            return 1
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return 0

    return run(main())
