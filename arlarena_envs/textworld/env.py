"""arlarena/TextWorld-v0: TextWorld games (TextWorld's own generator), offline and seeded.

Task `task_id` of a split is the game generated from seed `task_id` with the difficulty preset
of the `preset` kwarg (easy / medium / hard, see generator.PRESETS), compiled once into the cache.

Per step: observation = the game's feedback text (the title banner and the trailing
status line removed); task = the game's objective; admissible commands sorted (TextWorld's
list, whose order we do not rely on); state_hash = hash of the preset, seed and the game's true
facts (sorted); the oracle is TextWorld's winning policy from the current state
(`policy_commands[0]`, re-planned every step, so it also works after off-policy actions).

Rewards (native, then x reward_scale = 10 in the spec):
  sparse (default): 1 on the step that wins, else 0                        -> 10 x won
  dense:            TextWorld's intermediate reward / 10 per step (+0.1 when the step shortens
                    the winning policy, -0.1 when it lengthens it), and 1 on the winning step
The episode terminates when the game is won or lost.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from arlarena_envs.core import TextEnv
from arlarena_envs.errors import ConfigError, DataError, MissingDependencyError
from arlarena_envs.textworld.generator import PRESETS, TEXTWORLD_LOCK, default_cache_dir, game_for

DENSE_STEP = 0.1  # native reward per unit of TextWorld's intermediate reward in dense mode


def clean_feedback(text: str, objective: str = "") -> str:
    """The feedback without the ASCII title banner and the '>  -= Room =-score/moves' line."""
    cut = text.rfind("\n>")
    if cut >= 0:
        text = text[:cut]
    if objective and objective[:40] in text:
        text = text[text.index(objective[:40]):]
    return text.strip()


class TextWorldEnv(TextEnv):
    default_env_id = "arlarena/TextWorld-v0"

    def __init__(
        self,
        *,
        preset: str = "medium",
        reward_mode: Literal["sparse", "dense"] = "sparse",
        cache_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
        if reward_mode not in ("sparse", "dense"):
            raise ConfigError(f"reward_mode must be 'sparse' or 'dense', got {reward_mode!r}")
        try:
            import textworld
        except ImportError as e:  # pragma: no cover - the registry checks the extra first
            raise MissingDependencyError(f"arlarena/TextWorld-v0 needs textworld ({e}): pip install 'arlarena-envs[textworld]'") from e
        self._tw = textworld
        self.preset, self.reward_mode = preset, reward_mode
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._env: Any = None
        self._game_file = ""
        self._seed = -1
        self._state: Any = None
        self._objective = ""
        self._pins = {d.name: d.sha256 for d in self.env_spec.data}

    def _infos(self) -> Any:
        return self._tw.EnvInfos(
            won=True, lost=True, score=True, max_score=True, admissible_commands=True, facts=True,
            feedback=True, policy_commands=True, intermediate_reward=True, objective=True,
        )

    def _verify_pin(self, seed: int, z8: Path) -> None:
        """Games pinned in the spec's `data:` must still hash to the pinned digest."""
        pin = self._pins.get(f"{self.preset}/seed-{seed}")
        if pin is None:
            return
        digest_file = z8.parent / "digest.txt"
        got = digest_file.read_text().strip() if digest_file.is_file() else ""
        if got != pin:
            raise DataError(
                f"TextWorld game {self.preset}/seed-{seed} in {z8.parent} has digest {got or '(none)'}, the spec pins "
                f"{pin}: a different textworld version generates other games. Delete that folder to regenerate, "
                "or install the textworld version the spec was made with (pyproject's `textworld` extra)."
            )

    # ------------------------------------------------------------------ TextEnv hooks

    def _load_task(self, task_id: int, split: str, rng: np.random.Generator) -> None:
        z8 = game_for(task_id, self.preset, self.cache_dir)
        self._verify_pin(task_id, z8)
        path = str(z8)
        with TEXTWORLD_LOCK, warnings.catch_warnings():  # loading a game parses its logic (see TEXTWORLD_LOCK)
            # jericho warns that it cannot track score/moves of TextWorld games: TextWorld does
            warnings.filterwarnings("ignore", message=".*is not fully supported.*")
            if self._env is None:
                self._env = self._tw.start(path, request_infos=self._infos())
            elif path != self._game_file:
                self._env.load(path)
            self._game_file, self._seed = path, task_id
            self._state = self._env.reset()
        self._objective = str(self._state["objective"]).strip()

    def _observe(self) -> str:
        return clean_feedback(str(self._state["feedback"]), self._objective)

    def _task_description(self) -> str:
        return self._objective

    def _admissible_actions(self) -> list[str]:
        return sorted(self._state["admissible_commands"])

    def _state_key(self) -> Any:
        return {"preset": self.preset, "seed": self._seed, "facts": sorted(str(f) for f in self._state["facts"])}

    def _apply(self, action: str) -> float:
        self._state, _score, _done = self._env.step(action)
        won, lost = bool(self._state["won"]), bool(self._state["lost"])
        if won or lost:
            self._terminated = True
        if won:
            return 1.0
        if self.reward_mode == "dense":
            return DENSE_STEP * float(self._state["intermediate_reward"])
        return 0.0

    def _won(self) -> bool:
        return self._state is not None and bool(self._state["won"])

    def _score(self) -> float:
        max_score = self._state["max_score"] or 1
        return float(self._state["score"]) / float(max_score)

    def _extra_info(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "game_seed": self._seed,
            "points": int(self._state["score"]),
            "max_points": int(self._state["max_score"]),
            "lost": bool(self._state["lost"]),
            "reward_mode": self.reward_mode,
        }

    def oracle_action(self) -> str | None:
        """The first command of TextWorld's winning policy from the current state."""
        if self._state is None or self._state["won"] or self._state["lost"]:
            return None
        plan = self._state["policy_commands"] or []
        return plan[0] if plan else None

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
            self._game_file = ""
        super().close()
