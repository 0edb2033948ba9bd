"""arlarena/ALFWorld-v0: ALFWorld (TextWorld engine) as in the ARLArena paper, offline by default.

Splits (registry/ALFWorld-v0.yaml):
* embedded, generated on first use into the cache ($ARLARENA_CACHE/alfworld or
  ~/.cache/arlarena/alfworld) by `generator.py`, deterministic from the task id:
  `train` (seen room layouts), `eval_in_distribution` (seen layouts, other task ids),
  `eval_out_of_distribution` (unseen layouts and held-out target objects);
* official, from `data_dir=` or $ALFWORLD_DATA (`alfworld-download` layout): `valid_seen` (140),
  `valid_unseen` (134), `official_train` (3,553); counts are checked (see official.py).

Per step: observation = the engine's feedback text; admissible actions = the engine's list
without 'help', sorted; reward = 1 on the winning step (x reward_scale 10 in the spec, so 10*won
as the paper); the episode terminates when won; `max_steps` 50 truncates. state_hash = hash of
the game id + the engine's true facts (sorted), not of the text. The handcoded expert (alfworld's
HandCodedTWAgent, seeded per episode) is `oracle_action()`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from arlarena_envs.alfworld.generator import (
    GENERATOR_VERSION,
    SUCCESS_NAMES,
    default_cache_dir,
    generate_game,
    write_game,
)
from arlarena_envs.alfworld.official import (
    FIX_HINT,
    OFFICIAL_SPLITS,
    collect_official_games,
    official_slots,
    resolve_data_root,
    scan_split,
)
from arlarena_envs.core import TextEnv
from arlarena_envs.errors import DataError

TASK_PREFIX = "Your task is to: "


def _task_from_intro(text: str) -> str:
    """The goal sentence of the intro text ('Your task is to: put a pen in desk.')."""
    i = text.rfind(TASK_PREFIX)
    return text[i + len(TASK_PREFIX):].strip() if i >= 0 else ""


class ALFWorldEnv(TextEnv):
    default_env_id = "arlarena/ALFWorld-v0"

    def __init__(
        self,
        *,
        cache_dir: str | os.PathLike | None = None,
        data_dir: str | os.PathLike | None = None,
        ood_splits: list[str] | tuple[str, ...] = ("eval_out_of_distribution",),
        official_allow_partial: bool = False,
        expert: bool = True,
        expert_max_steps: int = 200,
        fast_textgen: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        # the engine module imports alfworld/textworld: import it only when an env is built
        from arlarena_envs.alfworld import engine

        self._engine_mod = engine
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.data_dir = data_dir
        self.ood_splits = tuple(ood_splits)
        self.official_allow_partial = bool(official_allow_partial)
        self.expert = bool(expert)
        self.expert_max_steps = int(expert_max_steps)
        self.fast_textgen = bool(fast_textgen)
        self._official: dict[str, list[tuple[Path, str | None]]] = {}
        self._pinned = {d.name: d.sha256 for d in self.env_spec.data}
        self._session: Any = None
        self._state: Any = None
        self._game_id = ""
        self._game_path = ""
        self._task_type = ""
        self._goal = ""
        self._source = ""

    # ------------------------------------------------------------------ games

    def official_games(self, split: str) -> list[Path]:
        """The sorted game files of an official split (count-checked unless allow_partial; with
        allow_partial, only the playable ones: task indices follow `official_slots`)."""
        return [path for path, problem in self._official_slots(split) if problem is None]

    def official_problems(self, split: str) -> dict[int, str]:
        """Task index -> why that game cannot be played (empty unless official_allow_partial)."""
        return {i: f"{path}: {problem}" for i, (path, problem) in enumerate(self._official_slots(split)) if problem is not None}

    def _official_slots(self, split: str) -> list[tuple[Path, str | None]]:
        """Task index -> (game file, problem or None). Complete data: every game, count-checked.
        official_allow_partial=True: the slots of a complete download (official.official_slots),
        so indices never shift; a warning lists the unplayable ones and resetting one raises."""
        if split not in self._official:
            root = resolve_data_root(self.data_dir)
            if self.official_allow_partial:
                folder, _ = OFFICIAL_SPLITS[split]
                slots = official_slots(scan_split(root / "json_2.1.1" / folder))
                if not slots:
                    collect_official_games(root, split, expected=None)  # raises, saying what is missing
                bad = [(i, path, why) for i, (path, why) in enumerate(slots) if why is not None]
                if bad:
                    listed = "; ".join(f"#{i} {path} ({why})" for i, path, why in bad[:10])
                    warnings.warn(
                        f"ALFWorld {split}: {len(bad)} of {len(slots)} games cannot be played and raise DataError on "
                        f"reset (indices are kept): {listed}{' ...' if len(bad) > 10 else ''}",
                        stacklevel=3,
                    )
                self._official[split] = slots
            else:
                self._official[split] = [(p, None) for p in collect_official_games(root, split, expected=self._check_split(split).size)]
        return self._official[split]

    def _game_for(self, task_id: int, split: str) -> tuple[Path, str, str]:
        """(game file, game id, source) of task `task_id` of `split`."""
        if split in OFFICIAL_SPLITS:
            slots = self._official_slots(split)
            idx = task_id - self._check_split(split).start
            if idx >= len(slots):
                raise DataError(
                    f"ALFWorld {split} task {idx} does not exist in this partial copy of the official data "
                    f"({len(slots)} trial folders found; the official count is {self._check_split(split).size}). {FIX_HINT}"
                )
            path, problem = slots[idx]
            if problem is not None:
                raise DataError(f"ALFWorld {split} task {idx} cannot be played: {path}: {problem}. {FIX_HINT}")
            rel = path.parent.relative_to(path.parents[2]).as_posix()
            return path, f"official/{split}/{rel}", "official"
        pool = "unseen" if split in self.ood_splits else "seen"
        key = f"gen-v{GENERATOR_VERSION}/{pool}/{task_id}"
        if key == self._game_id and Path(self._game_path).is_file():  # same game again (a GRPO group)
            return Path(self._game_path), key, "generated"
        game = generate_game(task_id, pool)
        if key in self._pinned and game.sha256() != self._pinned[key]:
            raise DataError(
                f"generated game {key} has sha256 {game.sha256()}, but the spec pins {self._pinned[key]}: the generator "
                "changed behaviour; bump the env version (and GENERATOR_VERSION) instead of editing the pin"
            )
        return write_game(game, self.cache_dir), key, "generated"

    # ------------------------------------------------------------------ TextEnv hooks

    def _load_task(self, task_id: int, split: str, rng: np.random.Generator) -> None:
        path, game_id, source = self._game_for(task_id, split)
        if self._session is None:
            self._session = self._engine_mod.EngineSession(
                expert=self.expert, expert_max_steps=self.expert_max_steps, fast_textgen=self.fast_textgen
            )
        self._session.load(str(path))
        self._game_id, self._game_path, self._source = game_id, str(path), source
        # the expert's private `random` stream: a pure function of the episode's np_random
        self._state = self._session.reset(int(rng.integers(2**31)))
        self._goal = _task_from_intro(self._state["feedback"])
        self._task_type = self._session.task_type

    def _observe(self) -> str:
        return str(self._state["feedback"]).strip()

    def _task_description(self) -> str:
        return self._goal

    def _admissible_actions(self) -> list[str]:
        # 'help' removed as in the paper; sorted so the list never depends on engine internals
        return sorted(c for c in self._state["admissible_commands"] if c != "help")

    def _state_key(self) -> Any:
        # the engine's true state: every fact as (predicate, argument names), sorted
        return {"game": self._game_id, "facts": self._engine_mod.sort_facts(self._state)}

    def _apply(self, action: str) -> float:
        was_won = bool(self._state["won"])
        self._state, _score, _done = self._session.step(action)
        won = bool(self._state["won"])
        if won:
            self._terminated = True
        return 1.0 if won and not was_won else 0.0

    def _won(self) -> bool:
        return self._state is not None and bool(self._state["won"])

    def _score(self) -> float:
        return float(self._won())

    def _extra_info(self) -> dict[str, Any]:
        name = SUCCESS_NAMES.get(self._task_type, self._task_type)
        return {
            "task_type": self._task_type,
            "task_name": name,
            f"{name}_success": float(self._won()),
            "game_id": self._game_id,
            "source": self._source,
            "expert_failed": self._session is not None and self._session.expert_failed,
        }

    def oracle_action(self) -> str | None:
        """The handcoded expert's next command (None once won, or if the expert gave up)."""
        if self._state is None or self._won() or not self.expert:
            return None
        plan = self._state.get("extra.expert_plan") or []
        return plan[0] if plan else None

    # ------------------------------------------------------------------ misc

    @property
    def game_path(self) -> str:
        return self._game_path

    @property
    def walkthrough(self) -> list[str]:
        """The walkthrough stored in the game file (a winning command list from the start)."""
        return list(json.loads(Path(self._game_path).read_text(encoding="utf-8")).get("walkthrough", []))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        super().close()

