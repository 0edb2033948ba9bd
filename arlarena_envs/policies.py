"""Reference policies every env supports: uniform random over admissible actions, and the
env's oracle (expert). They produce bare actions; the leaderboard and behaviour cloning wrap
them in the `<think>/<action>` format where a model would be imitated."""

from __future__ import annotations

from typing import Any

import numpy as np

from arlarena_envs.contract import Observation
from arlarena_envs.errors import ArlArenaError


class OracleUnavailableError(ArlArenaError, RuntimeError):
    """The env has no expert for the current state."""


class RandomPolicy:
    """Uniform over the admissible actions (seeded; its own RNG)."""

    name = "random"

    def __init__(self, seed: int | None = 0):
        self._rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def act(self, observation: Observation, env: Any = None) -> str:
        actions = observation.admissible_actions
        if not actions:
            sample = getattr(env, "sample_action", None)
            if sample is None:
                raise ArlArenaError("random policy needs admissible actions or env.sample_action(rng)")
            return sample(self._rng)
        return actions[int(self._rng.integers(len(actions)))]


class OraclePolicy:
    """The env's expert: `env.oracle_action()` (an optimal plan for Sokoban, the handcoded
    expert for ALFWorld, the goal-driven shopper for WebShop, the walkthrough for TextWorld)."""

    name = "oracle"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: Observation, env: Any) -> str:
        action = env.oracle_action()
        if action is None:
            raise OracleUnavailableError("the env has no oracle action for this state")
        return action


def wrap_tagged(action: str, think: str = "") -> str:
    """Format a bare action as a response in the paper's format."""
    return f"<think>{think}</think><action>{action}</action>"
