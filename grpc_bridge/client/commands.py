"""``grpc-bridge list | describe | call``: flags, settings, and the three commands.

The flags follow grpcurl's (double-dash spelled): ``-H``, ``--plaintext``,
``--cacert``/``--cert``/``--key``/``--servername``/``--authority``,
``--insecure``, ``--max-time``, ``--protoset``, ``-d``, ``-v``. The JSON mapping
is the daemon's: its ``json.*`` settings (env, ``--config`` file), then the
flags on top. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from grpc_bridge.client.output import EXIT_FAILURE, EXIT_USAGE, Output

if TYPE_CHECKING:
    from grpc_bridge.upstream.metadata import Metadata

__all__ = ["COMMANDS", "add_commands", "main"]

COMMANDS = ("list", "describe", "call")
#: What a shell reports for a process ended by SIGINT / SIGPIPE (128 + the signal).
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    pass


def add_commands(sub: Any) -> None:
    """Register the client's subcommands on cli.py's subparsers."""
    listing = sub.add_parser(
        "list",
        help="list a gRPC server's services, or one service's methods (like grpcurl list)",
    )
    listing.add_argument("first", nargs="?", metavar="TARGET", help="HOST:PORT of the server")
    listing.add_argument("second", nargs="?", metavar="SERVICE", help="list this service's methods")
    _common(listing)

    describe = sub.add_parser(
        "describe", help="show a service, method, message or enum as proto source"
    )
    describe.add_argument("first", nargs="?", metavar="TARGET", help="HOST:PORT of the server")
    describe.add_argument(
        "second", nargs="?", metavar="SYMBOL", help="full name; every service when omitted"
    )
    _common(describe)

    call = sub.add_parser("call", help="call a method with JSON (like grpcurl TARGET METHOD)")
    call.add_argument("first", nargs="?", metavar="TARGET", help="HOST:PORT of the server")
    call.add_argument("second", nargs="?", metavar="METHOD", help="package.Service/Method")
    call.add_argument(
        "-d",
        "--data",
        metavar="JSON",
        help="request JSON; @FILE reads a file, @- stdin; request streams take one "
        "message per line (NDJSON). Without -d: one empty message (no messages for "
        "request streams)",
    )
    call.add_argument(
        "-v", "--verbose", action="store_true", help="show the method, metadata, headers, trailers"
    )
    _common(call)
    json = call.add_argument_group("JSON mapping (default: the daemon's json.* settings)")
    json.add_argument(
        "--emit-defaults",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print fields that hold their default value (json.emit_unpopulated)",
    )
    json.add_argument(
        "--use-proto-names",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="snake_case field names instead of lowerCamelCase (json.use_proto_names)",
    )
    json.add_argument(
        "--enums-as-ints",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="enum values as numbers (json.enums_as_ints)",
    )
    json.add_argument(
        "--allow-unknown-fields",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ignore unknown request fields (json.ignore_unknown_fields)",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'KEY: VALUE'",
        help="request metadata (repeatable; -bin keys take base64)",
    )
    parser.add_argument("--plaintext", action="store_true", help="no TLS")
    parser.add_argument(
        "--insecure", action="store_true", help="TLS without verifying the server's certificate"
    )
    parser.add_argument("--cacert", metavar="FILE", help="PEM CA certificates to verify the server")
    parser.add_argument("--cert", metavar="FILE", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--key", metavar="FILE", help="PEM client private key (mutual TLS)")
    parser.add_argument(
        "--servername", metavar="NAME", help="server name to verify (and send as :authority)"
    )
    parser.add_argument("--authority", metavar="NAME", help=":authority of the calls")
    parser.add_argument(
        "--max-time",
        type=float,
        metavar="SECONDS",
        help="deadline for the whole command, sent to the server as grpc-timeout",
    )
    parser.add_argument(
        "--protoset",
        action="append",
        default=[],
        metavar="FILE",
        help="FileDescriptorSet file(s) instead of server reflection (repeatable)",
    )
    parser.add_argument(
        "--max-msg-sz", type=int, metavar="BYTES", help="largest response message accepted"
    )
    parser.add_argument(
        "--config", "-c", metavar="FILE", help="daemon configuration to take json.* settings from"
    )
    parser.add_argument(
        "--upstream",
        metavar="NAME",
        help="instead of TARGET and connection flags: the configuration's upstream NAME "
        "(its targets, TLS, authority, descriptor sets)",
    )


def main(args: argparse.Namespace) -> int:
    out = Output(
        sys.stdout.buffer,
        sys.stderr.buffer,
        pretty=sys.stdout.isatty(),
        pretty_errors=sys.stderr.isatty(),
    )
    try:
        target, symbol = _positionals(args)
        metadata = parse_headers(args.header)
        overrides = _overrides(args, target)
    except UsageError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    from grpc_bridge.settings import ConfigError, load_settings

    try:
        settings = load_settings(args.config, overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            out.error(_config_words(problem) if args.upstream else _in_flag_words(problem))
        return EXIT_USAGE
    if args.upstream is None:
        upstream = settings.upstreams[0]
    else:
        try:
            upstream = settings.upstream_named(args.upstream)
        except KeyError:
            names = ", ".join(u.name for u in settings.upstreams)
            out.error(f"--upstream {args.upstream!r}: the configuration has {names}")
            return EXIT_USAGE
        target = upstream.targets[0]
    try:
        return asyncio.run(_run(args, settings, upstream, target, symbol, metadata, out))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # the call was cancelled on the way out
    except BrokenPipeError:
        # The reader went away (`| head -1`): stop quietly, as a shell pipeline expects,
        # and keep Python from failing again while flushing stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


async def _run(
    args: argparse.Namespace,
    settings: Any,
    upstream: Any,
    target: str | None,
    symbol: str | None,
    metadata: Metadata,
    out: Output,
) -> int:
    from grpc_bridge.client.invoke import invoke
    from grpc_bridge.client.protoprint import describe, full_name, kind_of
    from grpc_bridge.client.requests import InputError, lines_from
    from grpc_bridge.client.session import ClientError, Session
    from grpc_bridge.codec.json_codec import JsonOptions
    from grpc_bridge.upstream.tls import TlsFileError

    deadline = None if args.max_time is None else time.monotonic() + args.max_time
    session = None
    try:
        session = Session(
            upstream,
            metadata=metadata,
            deadline=deadline,
            offline=target is None,
            verify=not args.insecure,
        )
        if args.command == "list":
            if symbol is None:
                names = await session.services()
                print("\n".join(names) if names else "(No services)", flush=True)
            else:
                service = await session.find(symbol)
                methods = getattr(service, "methods", None)
                if methods is None:
                    raise ClientError(f"{symbol} is not a service")
                names = sorted(f"{symbol.removeprefix('.')}.{m.name}" for m in methods)
                print("\n".join(names) if names else "(No methods)", flush=True)
            return 0
        if args.command == "describe":
            symbols = [symbol] if symbol is not None else await session.services()
            for name in symbols:
                found = await session.find(name)
                text = describe(found, session.files)
                print(f"{full_name(found)} is {kind_of(found)}:\n{text}", flush=True)
            return 0
        assert symbol is not None
        return await invoke(
            session,
            symbol,
            lines_from(args.data),
            metadata,
            _json_options(JsonOptions.from_settings(settings), args),
            out,
            verbose=args.verbose,
        )
    except (ClientError, InputError, TlsFileError) as exc:
        out.error(str(exc))
        return EXIT_FAILURE
    finally:
        if session is not None:
            await session.close()


def _positionals(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(target, symbol). list/describe may omit the target with --protoset."""
    first, second = args.first, args.second
    if args.upstream is not None:
        if second is not None:
            raise UsageError("--upstream names the server: give no TARGET")
        if args.command == "call" and first is None:
            raise UsageError("no METHOD given")
        return None, first
    omitted = args.command != "call" and args.protoset and second is None
    if omitted and first is not None and not _looks_like_target(first):
        first, second = None, first
    if first is None and (args.command == "call" or not args.protoset):
        raise UsageError("no TARGET (HOST:PORT) given")
    if args.command == "call" and second is None:
        raise UsageError("no METHOD given")
    return first, second


def _looks_like_target(text: str) -> bool:
    return ":" in text or text.startswith("unix:")


def parse_headers(headers: list[str]) -> Metadata:
    """``-H 'key: value'`` → metadata, as grpcurl reads it (key lower-cased, both trimmed)."""
    from grpc_bridge.errors import InvalidArgument
    from grpc_bridge.upstream.metadata import decode_bin

    metadata: Metadata = []
    for header in headers:
        key, sep, value = header.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key:
            raise UsageError(f"-H {header!r}: expected 'key: value'")
        if not all(c.isascii() and (c.isalnum() or c in "-_.") for c in key):
            raise UsageError(f"-H {header!r}: {key!r} is not a valid metadata key")
        if key.endswith("-bin"):
            try:
                metadata.append((key, decode_bin(f"-H {key}", value)))
            except InvalidArgument as exc:
                raise UsageError(str(exc)) from exc
        elif not (value.isascii() and value.isprintable()):
            raise UsageError(f"-H {header!r}: the value must be printable ASCII")
        else:
            metadata.append((key, value))
    return metadata


def _overrides(args: argparse.Namespace, target: str | None) -> dict[str, Any]:
    """Settings overrides: one upstream from the flags (validated like a config file's)."""
    if args.upstream is not None:
        connection = [args.plaintext, args.insecure, args.cacert, args.cert, args.key]
        connection += [args.servername, args.authority, args.protoset, args.max_msg_sz]
        if any(connection):
            raise UsageError(
                "--upstream takes the connection settings from the configuration: "
                "no TLS, --authority, --protoset or --max-msg-sz flags with it"
            )
        return {}
    tls_flags = {
        "ca_file": args.cacert,
        "cert_file": args.cert,
        "key_file": args.key,
        "server_name": args.servername,
    }
    given = {k: v for k, v in tls_flags.items() if v is not None}
    if args.plaintext and (given or args.insecure):
        raise UsageError("--plaintext turns TLS off: it can't go with TLS flags")
    if (args.cert is None) != (args.key is None):
        raise UsageError("--cert and --key go together (mutual TLS needs both)")
    if args.insecure and args.cacert:
        raise UsageError("--insecure skips verification: it can't go with --cacert")
    if args.max_time is not None and args.max_time <= 0:
        raise UsageError("--max-time must be positive")
    # --insecure is TLS all the same: the session's connection skips verification.
    tls: dict[str, Any] = {"enabled": True, **given}
    if args.plaintext:
        tls = {"enabled": False}
    upstream: dict[str, Any] = {
        "name": "cli",
        "targets": [target or "127.0.0.1:1"],
        "tls": tls,
        "reflection": not args.protoset,
        "descriptor_sets": args.protoset,
        "retries": 0,
        "pool_size": 1,
    }
    if args.authority:
        upstream["authority"] = args.authority
    if args.max_msg_sz is not None:
        upstream["max_receive_message_bytes"] = args.max_msg_sz
    overrides: dict[str, Any] = {"upstream": None, "upstreams": [upstream], "routes": []}
    return overrides


#: Settings keys of the upstream built from the flags, by the flag that set them.
_FLAG_KEYS = (
    ("ca_file", "--cacert"),
    ("cert_file", "--cert"),
    ("key_file", "--key"),
    ("server_name", "--servername"),
    ("descriptor_sets", "--protoset"),
    ("max_receive_message_bytes", "--max-msg-sz"),
    ("targets", "TARGET"),
)


def _in_flag_words(problem: str) -> str:
    """A settings problem about the upstream the flags built, named by those flags."""
    if not problem.startswith("upstreams[0]"):
        return _config_words(problem)
    text = problem.removeprefix("upstreams[0]").lstrip(".: ").removeprefix("tls").lstrip(".: ")
    for key, flag in _FLAG_KEYS:
        text = text.replace(key, flag)
    return text


def _config_words(problem: str) -> str:
    return problem if problem.startswith("config") else f"config: {problem}"


def _json_options(base: Any, args: argparse.Namespace) -> Any:
    from dataclasses import replace

    flags = {
        "emit_unpopulated": args.emit_defaults,
        "use_proto_names": args.use_proto_names,
        "enums_as_ints": args.enums_as_ints,
        "ignore_unknown_fields": args.allow_unknown_fields,
    }
    return replace(base, **{k: v for k, v in flags.items() if v is not None})
