"""Env pools: step N envs as a batch, whatever runs them.

    pool = make_pool("arlarena/Sokoban-v0", num_envs=8, backend="inprocess")
    first = pool.reset(seeds=[7] * 4 + [8] * 4)          # two GRPO groups of 4
    results = pool.step(["up", None, ...])               # None = leave that env alone

Backends (name -> class, imported lazily): inprocess (here), subprocess, remote, docker, ray.
A backend whose worker dies returns, for that env, a StepResult with truncated=True and
`info.extra["truncated_reason"]`, restarts the worker, and keeps the other envs going.
"""

from __future__ import annotations

import abc
import importlib
from typing import Any, Sequence

from arlarena_envs.contract import Observation, Protocol, StepInfo, StepResult
from arlarena_envs.errors import ConfigError
from arlarena_envs.registry import make

BACKENDS: dict[str, str] = {
    "inprocess": "arlarena_envs.pools:InProcessPool",
    "subprocess": "arlarena_envs.pools.subprocess:SubprocessPool",
    "remote": "arlarena_envs.pools.remote:RemotePool",
    "docker": "arlarena_envs.pools.docker:DockerPool",
    "ray": "arlarena_envs.pools.ray:RayPool",
}


class EnvPool(abc.ABC):
    """N independent envs of one id, stepped together."""

    env_id: str
    num_envs: int
    protocol: Protocol  # what every env of the pool plays: the spec's protocol with the pool's overrides

    @abc.abstractmethod
    def reset(
        self, seeds: Sequence[int | None], options: Sequence[dict[str, Any] | None] | None = None
    ) -> list[tuple[Observation, StepInfo]]:
        """Reset every env (seeds[i] for env i); returns the first observation of each."""

    @abc.abstractmethod
    def step(self, actions: Sequence[str | None]) -> list[StepResult | None]:
        """Step env i with actions[i]; None skips env i (and gives None back)."""

    @abc.abstractmethod
    def oracle_actions(self) -> list[str | None]:
        """The expert's next action for every env (None where there is none)."""

    @abc.abstractmethod
    def prompts(self) -> list[str]:
        """The current prompt of every env (`env.prompt()`: the spec's template, last H steps)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "EnvPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InProcessPool(EnvPool):
    """All envs in this process, stepped one after another (fast for cheap envs)."""

    def __init__(self, env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None):
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        self.env_id, self.num_envs = env_id, num_envs
        self.envs = [make(env_id, **(env_kwargs or {})).unwrapped for _ in range(num_envs)]
        self.protocol = self.envs[0].protocol

    @classmethod
    def of_envs(cls, envs: Sequence[Any]) -> "InProcessPool":
        """A pool over envs built elsewhere (a TextEnv or a RemoteEnv each), e.g. the
        leaderboard's single env; closing the pool closes them."""
        if not envs:
            raise ConfigError("a pool needs at least one env")
        pool = cls.__new__(cls)
        pool.envs = list(envs)
        pool.env_id, pool.num_envs = envs[0].env_spec.id, len(envs)
        pool.protocol = envs[0].protocol
        return pool

    def reset(self, seeds, options=None):
        if len(seeds) != self.num_envs:
            raise ConfigError(f"need {self.num_envs} seeds, got {len(seeds)}")
        opts = list(options) if options is not None else [None] * self.num_envs
        return [env.reset_result(seed=s, options=o) for env, s, o in zip(self.envs, seeds, opts)]

    def step(self, actions):
        if len(actions) != self.num_envs:
            raise ConfigError(f"need {self.num_envs} actions, got {len(actions)}")
        return [None if a is None else env.step_result(a) for env, a in zip(self.envs, actions)]

    def oracle_actions(self):
        return [env.oracle_action() for env in self.envs]

    def prompts(self):
        return [env.prompt() for env in self.envs]

    def close(self):
        for env in self.envs:
            env.close()


def make_pool(env_id: str, num_envs: int, backend: str = "inprocess", env_kwargs: dict[str, Any] | None = None, **backend_kwargs: Any) -> EnvPool:
    try:
        target = BACKENDS[backend]
    except KeyError:
        raise ConfigError(f"unknown pool backend {backend!r}; choose one of {sorted(BACKENDS)}") from None
    module, cls = target.split(":")
    pool_cls = getattr(importlib.import_module(module), cls)
    return pool_cls(env_id, num_envs, env_kwargs=env_kwargs, **backend_kwargs)


__all__ = ["BACKENDS", "EnvPool", "InProcessPool", "make_pool"]
