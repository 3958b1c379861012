"""What every settings module shares: the environment prefix, the error, the section base."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

ENV_PREFIX = "GRPC_BRIDGE_"
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"

# gRPC channel arguments are C ints: milliseconds and byte counts must fit.
MAX_INT_ARG = 2**31 - 1
MAX_MS_ARG_S = MAX_INT_ARG // 1000


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds one line per problem, each naming its key."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
