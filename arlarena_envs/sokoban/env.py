"""arlarena/Sokoban-v0: text Sokoban as in the paper (6x6, one box by default).

Rewards as gym-sokoban: -0.1 per step, +1 when a box reaches a target, -1 when one leaves
it, +10 when every box is on a target (the episode then terminates).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from arlarena_envs.core import TextEnv
from arlarena_envs.hashing import state_hash
from arlarena_envs.sokoban.generator import generate_level
from arlarena_envs.sokoban.rules import ACTIONS, Level, State, is_solved, move, render
from arlarena_envs.sokoban.solver import solve

STEP_REWARD = -0.1
BOX_ON_REWARD = 1.0
BOX_OFF_REWARD = -1.0
SOLVED_REWARD = 10.0
TASK = "Push every box onto a target."


class SokobanEnv(TextEnv):
    default_env_id = "arlarena/Sokoban-v0"

    def __init__(
        self,
        *,
        dim_room: tuple[int, int] | list[int] = (6, 6),
        num_boxes: int = 1,
        search_depth: int = 30,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.dim_room = (int(dim_room[0]), int(dim_room[1]))
        self.num_boxes = int(num_boxes)
        self.search_depth = int(search_depth)
        self._level: Level | None = None
        self._state: State | None = None
        self._level_seed = -1
        self._optimal = 0
        self._plan: list[str] = []
        self._plan_from: State | None = None
        self._level_key: list = []
        self._cache: dict[State, tuple[str, str]] = {}  # state -> (text, hash), per level

    def _load_task(self, task_id: int, split: str, rng: np.random.Generator) -> None:
        self._level, self._state, self._optimal = generate_level(task_id, self.dim_room, self.num_boxes, self.search_depth)
        self._level_seed = task_id
        self._plan, self._plan_from = [], None
        self._level_key = [sorted(self._level.walls), sorted(self._level.targets)]
        self._cache = {}

    def _cached(self) -> tuple[str, str]:
        assert self._level is not None and self._state is not None
        hit = self._cache.get(self._state)
        if hit is None:
            hit = (render(self._level, self._state), state_hash(self._state_key()))
            if len(self._cache) < 4096:
                self._cache[self._state] = hit
        return hit

    def _state_hash(self) -> str:
        return self._cached()[1]

    def _observe(self) -> str:
        return self._cached()[0]

    def _task_description(self) -> str:
        return TASK

    def _admissible_actions(self) -> list[str]:
        return list(ACTIONS)

    def _snapshot_state(self) -> Any:
        return self._state  # State is immutable; _apply only rebinds it

    def _restore_state(self, snapshot: Any) -> None:
        self._state = snapshot

    def _state_key(self) -> Any:
        assert self._level is not None and self._state is not None
        return {
            "walls": self._level_key[0],
            "targets": self._level_key[1],
            "player": self._state.player,
            "boxes": sorted(self._state.boxes),
        }

    def _apply(self, action: str) -> float:
        assert self._level is not None and self._state is not None
        self._state, delta = move(self._level, self._state, action)
        reward = STEP_REWARD + (BOX_ON_REWARD if delta > 0 else BOX_OFF_REWARD if delta < 0 else 0.0)
        if is_solved(self._level, self._state):
            reward += SOLVED_REWARD
            self._terminated = True
        return reward

    def _won(self) -> bool:
        return self._level is not None and self._state is not None and is_solved(self._level, self._state)

    def _score(self) -> float:
        assert self._level is not None and self._state is not None
        return len(self._state.boxes & self._level.targets) / len(self._state.boxes)

    def _extra_info(self) -> dict[str, Any]:
        assert self._level is not None and self._state is not None
        return {
            "level_seed": self._level_seed,
            "boxes_on_target": len(self._state.boxes & self._level.targets),
            "num_boxes": len(self._state.boxes),
            "optimal_length": self._optimal,
        }

    def oracle_action(self) -> str | None:
        """Next action of an optimal plan from the current state (re-planned if we drifted)."""
        assert self._level is not None and self._state is not None
        if self._won():
            return None
        if self._plan_from != self._state or not self._plan:
            self._plan = solve(self._level, self._state) or []
            self._plan_from = self._state
        if not self._plan:
            return None
        action = self._plan[0]
        nxt, _ = move(self._level, self._state, action)
        self._plan, self._plan_from = self._plan[1:], nxt
        return action

    @property
    def level(self) -> Level | None:
        return self._level

    @property
    def state(self) -> State | None:
        return self._state
