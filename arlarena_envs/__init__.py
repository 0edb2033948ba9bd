"""ARLArena: standard text environments for agentic RL of LLM agents.

    import gymnasium as gym
    import arlarena_envs  # registers the arlarena/ ids (Gymnasium 1.x has no plugin loading)
    env = gym.make("arlarena/Sokoban-v0")

or, without the import, `gym.make("arlarena_envs:arlarena/Sokoban-v0")`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("arlarena-envs")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from arlarena_envs.contract import (  # noqa: E402
    EnvSpec,
    Observation,
    ParsedAction,
    ParseStatus,
    StepInfo,
    StepResult,
)
from arlarena_envs.core import TextEnv  # noqa: E402
from arlarena_envs.registry import get_spec, load_specs, make, register_all  # noqa: E402

register_all()

__all__ = [
    "EnvSpec",
    "Observation",
    "ParsedAction",
    "ParseStatus",
    "StepInfo",
    "StepResult",
    "TextEnv",
    "__version__",
    "get_spec",
    "load_specs",
    "make",
    "register_all",
]
