"""TLS material for upstream channels, read from files the settings have already checked.

The bytes are kept (not just the credentials object) so the pool can tell when
certificates were rotated on disk and rebuild its channels with the new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from grpc_bridge.settings import Tls


class TlsFileError(Exception):
    """A configured TLS file could not be read (the message names it)."""


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    #: None: the system's trust store (gRPC's bundled roots).
    ca: bytes | None
    cert: bytes | None
    key: bytes | None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def load_tls(tls: Tls) -> TlsMaterial | None:
    """The files' contents, or None when TLS is off; raises TlsFileError naming the file."""
    if not tls.enabled:
        return None
    return TlsMaterial(
        ca=_read("ca_file", tls.ca_file),
        cert=_read("cert_file", tls.cert_file),
        key=_read("key_file", tls.key_file),
    )


def _read(name: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsFileError(f"tls.{name} {str(path)!r}: {exc.strerror or exc}") from exc
