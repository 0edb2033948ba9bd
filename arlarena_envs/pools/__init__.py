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
from arlarena_envs.errors import ArlArenaError, ConfigError
from arlarena_envs.registry import make
from arlarena_envs.server.client import check_seed

BACKENDS: dict[str, str] = {
    "inprocess": "arlarena_envs.pools:InProcessPool",
    "subprocess": "arlarena_envs.pools.subprocess:SubprocessPool",
    "remote": "arlarena_envs.pools.remote:RemotePool",
    "docker": "arlarena_envs.pools.docker:DockerPool",
    "ray": "arlarena_envs.pools.ray:RayPool",
}


class PoolStepError(ArlArenaError):
    """Some envs of a batch could not step (e.g. one needs a reset); the others did.

    `results[i]` is env i's StepResult (None where it failed or was skipped), `errors[i]` the
    error of each env that failed. Nothing is lost: the envs that stepped keep their new state
    and their results are here. Reset the failed envs (or pass None for them) and go on."""

    def __init__(self, results: list, errors: dict[int, BaseException]):
        first = min(errors)
        super().__init__(
            f"{len(errors)} of {len(results)} envs could not step (env {first}: {type(errors[first]).__name__}: "
            f"{errors[first]}); the other envs stepped: their results are in .results, the errors in .errors"
        )
        self.results, self.errors = results, errors


def finish_step(out: list, errors: dict[int, BaseException], on_error: str) -> list:
    """A batch's outcome: `out` when every env stepped; otherwise raise `PoolStepError`
    (on_error="raise") or put each failed env's error in its slot (on_error="return")."""
    if not errors:
        return out
    if on_error == "return":
        return [errors.get(i, r) for i, r in enumerate(out)]
    raise PoolStepError(out, errors)


def check_seeds(seeds: Sequence[Any], num_envs: int) -> list[int | None]:
    """Every seed checked before any env resets (a bad one must not leave the batch half reset):
    a non-negative int (numpy ints included) or None, as `TextEnv.reset` takes it."""
    if len(seeds) != num_envs:
        raise ConfigError(f"need {num_envs} seeds, got {len(seeds)}")
    return [check_seed(s) for s in seeds]


def check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "return"):
        raise ConfigError(f"on_error must be 'raise' or 'return', got {on_error!r}")


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
    def step(self, actions: Sequence[str | None], on_error: str = "raise") -> list[StepResult | None]:
        """Step env i with actions[i]; None skips env i (and gives None back).

        An env that cannot step (reset needed, bad action type) never stops the others: they all
        step, then `PoolStepError` is raised carrying every result and error (on_error="raise"),
        or the error is returned in that env's slot (on_error="return")."""

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
        seeds = check_seeds(seeds, self.num_envs)
        opts = list(options) if options is not None else [None] * self.num_envs
        return [env.reset_result(seed=s, options=o) for env, s, o in zip(self.envs, seeds, opts)]

    def step(self, actions, on_error="raise"):
        if len(actions) != self.num_envs:
            raise ConfigError(f"need {self.num_envs} actions, got {len(actions)}")
        check_on_error(on_error)
        out: list[StepResult | None] = [None] * self.num_envs
        errors: dict[int, BaseException] = {}
        for i, (env, a) in enumerate(zip(self.envs, actions)):
            if a is None:
                continue
            try:
                out[i] = env.step_result(a)
            except ArlArenaError as e:
                errors[i] = e
        return finish_step(out, errors, on_error)

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


__all__ = ["BACKENDS", "EnvPool", "InProcessPool", "PoolStepError", "check_seeds", "make_pool"]
