"""Which of an upstream's services the bridge routes.

Globs are matched with :func:`fnmatch.fnmatchcase` on full service names
(``*`` also crosses dots, so ``shop.*`` takes every service of every
``shop.`` package). Case-sensitive on every platform, as protobuf names are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

#: Reflection is how the bridge learns the API, never something it routes.
_REFLECTION_PREFIX = "grpc.reflection."


def is_reflection_service(name: str) -> bool:
    return name.startswith(_REFLECTION_PREFIX)


def select_services(
    names: Iterable[str], include: Sequence[str] = ("*",), exclude: Sequence[str] = ()
) -> list[str]:
    """The names kept, sorted and without duplicates: included and not excluded.

    Exclusion wins over inclusion; reflection services are always dropped.
    """
    return sorted(
        {
            name
            for name in names
            if not is_reflection_service(name)
            and any(fnmatchcase(name, pattern) for pattern in include)
            and not any(fnmatchcase(name, pattern) for pattern in exclude)
        }
    )
