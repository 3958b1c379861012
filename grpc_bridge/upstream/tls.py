"""TLS material for upstream channels, read from files the settings have already checked.

The bytes are kept (not just the credentials object) so the pool can tell when
certificates were rotated on disk and rebuild its channels with the new ones.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from grpc_bridge.settings import Tls


class TlsFileError(Exception):
    """A configured TLS file could not be read (the message names it)."""


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    #: None: the system's trust store.
    ca: bytes | None
    cert: bytes | None
    key: bytes | None


def load_tls(tls: Tls) -> TlsMaterial | None:
    """The files' contents, or None when TLS is off; raises TlsFileError naming the file."""
    if not tls.enabled:
        return None
    material = TlsMaterial(
        ca=_read("ca_file", tls.ca_file),
        cert=_read("cert_file", tls.cert_file),
        key=_read("key_file", tls.key_file),
    )
    _validate(tls, material)
    return material


def _validate(tls: Tls, material: TlsMaterial) -> None:
    """Refuse what grpc would accept silently and fail on at handshake time.

    A TLS client takes any bytes; a half-written file or a key
    that does not match its certificate (a rotation caught mid-way) would
    replace working channels with broken ones. The stdlib parses both.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if material.ca is not None:
        try:
            context.load_verify_locations(cadata=material.ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise TlsFileError(
                f"tls.ca_file {str(tls.ca_file)!r}: not a usable PEM CA: {exc}"
            ) from exc
    if tls.cert_file is not None and tls.key_file is not None:
        try:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise TlsFileError(
                f"tls.cert_file/key_file {str(tls.cert_file)!r}, {str(tls.key_file)!r}: "
                f"not a matching PEM certificate and key: {exc}"
            ) from exc


def _read(name: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsFileError(f"tls.{name} {str(path)!r}: {exc.strerror or exc}") from exc
