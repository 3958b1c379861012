"""Command line: ``grpc-bridge serve | check-config | openapi | demo | version``, and the
grpcurl-class client commands ``list | describe | call`` (grpc_bridge/client/)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from grpc_bridge import __version__
from grpc_bridge.client.commands import COMMANDS as CLIENT_COMMANDS
from grpc_bridge.client.commands import add_commands as add_client_commands
from grpc_bridge.client.commands import main as client_main
from grpc_bridge.discovery.loader import DiscoveryError
from grpc_bridge.runloop import run
from grpc_bridge.settings import ConfigError, Settings, load_settings, stray_variables

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grpc-bridge",
        description="Call gRPC services from browsers and plain HTTP clients with JSON.",
    )
    parser.add_argument("--version", action="version", version=f"grpc-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the bridge")
    _config_flags(serve)

    check = sub.add_parser(
        "check-config", help="validate the configuration and exit 0 (valid) or 2"
    )
    _config_flags(check)

    openapi = sub.add_parser(
        "openapi", help="write the OpenAPI 3.1 document of the upstreams to stdout"
    )
    _config_flags(openapi)
    from grpc_bridge.openapi_command import add_arguments

    add_arguments(openapi)

    demo = sub.add_parser(
        "demo", help="run the embedded demo gRPC service with the bridge in front"
    )
    # Unset: listen.port / admin.port as for serve (GRPC_BRIDGE_LISTEN__PORT, ..., 8080, 8081).
    demo.add_argument("--port", type=int, help="proxy port (default 8080)")
    demo.add_argument("--admin-port", type=int, help="admin port (default 8081)")
    demo.add_argument("--grpc-port", type=int, default=0, help="demo gRPC port (default: any free)")

    sub.add_parser("version", help="print the version")
    add_client_commands(sub)
    return parser


def _config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML configuration file")
    parser.add_argument(
        "--upstream",
        action="append",
        metavar="[NAME=]TARGET",
        help="upstream gRPC server (repeatable; entries with one NAME are replicas)",
    )
    parser.add_argument("--host", help="proxy listen address (listen.host)")
    parser.add_argument("--port", type=int, help="proxy port (listen.port)")
    parser.add_argument("--admin-port", type=int, help="admin port (admin.port)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["auto", "json", "console"])
    parser.add_argument(
        "--workers", type=int, metavar="N", help="processes sharing the proxy port (workers)"
    )


def overrides_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags as init kwargs: they sit on top of env, YAML and defaults."""
    out: dict[str, Any] = {}
    if args.upstream:
        out["upstream"] = ",".join(args.upstream)
    listen = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if listen:
        out["listen"] = listen
    if args.admin_port is not None:
        out["admin"] = {"port": args.admin_port}
    log = {
        k: v for k, v in (("level", args.log_level), ("format", args.log_format)) if v is not None
    }
    if log:
        out["log"] = log
    if args.workers is not None:
        out["workers"] = args.workers
    return out


def _load(args: argparse.Namespace) -> Settings:
    for warning in stray_variables():
        print(f"grpc-bridge: warning: {warning}", file=sys.stderr)
    settings = load_settings(args.config, overrides_from_flags(args))
    check_sources(settings)
    return settings


def check_sources(settings: Settings) -> None:
    """Load every descriptor-set file and check every REST route now, so that a bad one
    fails start-up (exit 2), not the first request."""
    from grpc_bridge.bridge import json_options, load_static_schema
    from grpc_bridge.discovery.registry import Schema
    from grpc_bridge.routing.assemble import check_static_routes
    from grpc_bridge.tracing.config import check_tracing

    problems = []
    schemas: dict[str, Schema] = {}
    for i, up in enumerate(settings.upstreams):
        try:
            schema = load_static_schema(up)
        except DiscoveryError as exc:
            problems.append(f"upstreams[{i}].descriptor_sets: {exc}")
        else:
            if schema is not None:
                schemas[up.name] = schema
    if not problems:
        # Routes on reflection upstreams are checked again at each discovery.
        problems.extend(check_static_routes(settings, schemas, json_options(settings)))
    try:
        check_tracing(settings.tracing, os.environ)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        # SIGHUP means "refresh", never "exit": ignored until serve() installs its
        # handler (workers inherit this while they start).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if args.command in CLIENT_COMMANDS:
        return client_main(args)
    if args.command == "version":
        print(__version__)
        return 0
    try:
        if args.command == "demo":
            from grpc_bridge.demo.runner import run_demo
            from grpc_bridge.log import configure_logging

            configure_logging("auto", "info")
            return run(run_demo(args.port, args.admin_port, args.grpc_port))
        settings = _load(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"grpc-bridge: config: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"grpc-bridge: {exc}", file=sys.stderr)
        return 1
    if args.command == "check-config":
        names = ", ".join(u.name for u in settings.upstreams)
        print(f"configuration is valid: {len(settings.upstreams)} upstream(s) ({names})")
        return 0
    if args.command == "openapi":
        from grpc_bridge.log import configure_logging
        from grpc_bridge.openapi_command import run_openapi

        # stdout carries the document; its one-line failure names discovery's last error,
        # so the retries' warnings stay quiet unless --log-level asks for them.
        configure_logging(settings.log.format, args.log_level or "error")
        return run_openapi(settings, args)
    # Imported here: structlog and rich cost the client commands a fifth of a second.
    from grpc_bridge.log import configure_logging

    configure_logging(settings.log.format, settings.log.level)
    from grpc_bridge.app import serve
    from grpc_bridge.workers import serve_workers

    try:
        return run(serve_workers(settings) if settings.workers > 1 else serve(settings))
    except OSError as exc:
        # ListenError: "cannot listen on HOST:PORT for ...: address already in use ..."
        print(f"grpc-bridge: {exc}", file=sys.stderr)
        return 1
