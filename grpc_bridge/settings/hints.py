"""What a configuration problem needs to be fixed at once: where it came from, and the likely key.

A value set by an environment variable is named by that variable, since that
is what the operator typed (``GRPC_BRIDGE_LISTEN__PROT``, not ``listen.prot``);
an unknown key gets the closest known one (``did you mean `port`?``, difflib).
Unknown ``GRPC_BRIDGE_*`` variables are only warned about, and only when one
is close to a real setting: Kubernetes injects ``<SERVICE>_PORT``-style
variables for a Service named ``grpc-bridge``, which must not stop the bridge.

Pure functions over the settings models and an environment mapping; loading.py
calls them with its own model, so nothing here imports it.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

#: Variables that are not settings keys but are read under the prefix.
_NOT_KEYS = frozenset({"CONFIG"})
#: What Kubernetes' service links define for a Service named grpc-bridge (after the prefix).
_SERVICE_LINK = re.compile(r"SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_\w+)?)?")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model an annotation holds (``Upstream`` in ``list[Upstream]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _key_name(field_name: str) -> str:
    """The key as users write it (the ``json_`` field is ``json``)."""
    return field_name.rstrip("_")


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    return {_key_name(name): field.annotation for name, field in model.model_fields.items()}


def model_at(root: type[BaseModel], path: Sequence[str | int]) -> type[BaseModel] | None:
    """The model whose fields a key at ``path`` (without the key) is looked up in."""
    model: type[BaseModel] | None = root
    for part in path:
        if isinstance(part, int) or model is None:
            continue
        model = _model_in(_keys(model).get(part))
    return model


def closest(word: str, candidates: Sequence[str], cutoff: float = 0.6) -> str | None:
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=cutoff)
    return found[0] if found else None


def env_variable(path: Sequence[str | int], prefix: str, environ: Mapping[str, str]) -> str | None:
    """The variable (as set) that gave the value at ``path``: the longest prefix of its keys."""
    keys: list[str] = []
    for part in path:
        if isinstance(part, int):
            break
        keys.append(part)
    present = {name.upper(): name for name in environ}
    for end in range(len(keys), 0, -1):
        name = present.get(prefix + "__".join(keys[:end]).upper())
        if name is not None:
            return name
    return None


def explain(
    root: type[BaseModel],
    path: Sequence[str | int],
    shown: str,
    message: str,
    *,
    unknown: bool,
    prefix: str,
    environ: Mapping[str, str],
) -> str:
    """One problem line: ``shown: message``, named by its variable when the environment set it."""
    variable = env_variable(path, prefix, environ)
    if unknown and path and isinstance(path[-1], str):
        model = model_at(root, path[:-1])
        guess = closest(path[-1], list(_keys(model))) if model is not None else None
        if guess is not None:
            spelled = "__".join(map(str, path)).upper()
            if variable is not None and variable.upper().endswith(spelled):
                parent = variable[: len(variable) - len(path[-1])]
                message += f"; did you mean {parent}{guess.upper()}?"
            else:
                message += f"; did you mean `{guess}`?"
    if variable is None:
        return f"{shown}: {message}" if shown else message
    return f"{variable} ({shown}): {message}"


def known_variables(root: type[BaseModel], prefix: str) -> list[str]:
    """Every variable that names a setting: a key, or a key inside a section."""

    def walk(model: type[BaseModel], stem: str) -> Iterator[str]:
        for key, annotation in _keys(model).items():
            name = f"{stem}{key.upper()}"
            yield name
            inner = _model_in(annotation)
            origin = typing.get_origin(annotation)
            if inner is not None and origin not in (list, types.UnionType, typing.Union):
                yield from walk(inner, name + "__")

    return [*walk(root, prefix), *(prefix + name for name in _NOT_KEYS)]


def stray_variables(root: type[BaseModel], prefix: str, environ: Mapping[str, str]) -> list[str]:
    """Warnings for set variables that configure nothing but look like a setting mistyped."""
    known = known_variables(root, prefix)
    sections = {name.removeprefix(prefix).split("__")[0] for name in known}
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        rest = upper.removeprefix(prefix)
        if rest == upper or rest.split("__")[0] in sections or _SERVICE_LINK.fullmatch(rest):
            continue
        guess = closest(upper, known, cutoff=0.8)
        if guess is not None:
            warnings.append(f"{name} is not a setting and is ignored; did you mean {guess}?")
    return warnings
