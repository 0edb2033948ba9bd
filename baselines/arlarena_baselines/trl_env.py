"""Any registered env as TRL's `environment_factory` (GRPOTrainer, TRL 1.16).

    from trl import GRPOConfig, GRPOTrainer
    from arlarena_baselines.trl_env import environment_factory, task_dataset

    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer, args=GRPOConfig(num_generations=4, ...),
        train_dataset=task_dataset("arlarena/Sokoban-v0", num_tasks=256),
        environment_factory=environment_factory("arlarena/Sokoban-v0"),
    )

TRL's contract (trl/trainer/grpo_trainer.py, `environment_factory`): the factory takes no
arguments and returns one instance per rollout; `reset(**row)` gets the dataset row's columns
and returns text appended to the user message; every public method other than `reset` and
`get_reward` is a tool the model calls (name, typed arguments and Google-style docstring make
its schema); `get_reward()` scores the finished rollout; a tool raises once the episode is done.

Groups: GRPO repeats each dataset row `num_generations` times, so the G rollouts of a row get
the same `seed` column and reset to the same task (identical `state_hash`), as our trainer's
groups. `task_dataset` writes that column (and the prompt) for a split's task seeds.

How TRL plays a turn differs from the paper's recipe: TRL keeps one growing conversation (tool
results are appended), where SAMPO rebuilds the prompt from the env template every turn; for
the paper's per-turn rows use our trainer or the verl recipe. Here `reset` returns the env's
paper-style first prompt and each tool result is the next observation (and, where the env has
them, the admissible actions).
"""

from __future__ import annotations

import functools
from typing import Any

from arlarena_envs.contract import EpisodeRecord, TurnRecord
from arlarena_envs.errors import ConfigError, ResetNeededError

TOOL_INSTRUCTIONS = (
    "You are playing a text environment. Read the task and the observation, then call the `take_action` tool "
    "with exactly one action per call. Keep calling it until the episode is over."
)


class ArlArenaTRLEnv:
    """One env for one TRL rollout. Public methods are what TRL exposes: reset, take_action, get_reward."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None):
        from arlarena_envs.registry import create_env

        kw = dict(env_kwargs or {})
        kw.setdefault("action_format", "auto")  # tool arguments are bare actions; tagged text parses too
        self._env_id = env_id
        self._env = create_env(env_id=env_id, backend="inprocess", **kw).unwrapped
        self._record: EpisodeRecord | None = None
        self._done = False

    def reset(self, seed: int | None = None, task_index: int | None = None, **row: Any) -> str:
        """Start the episode of this dataset row; returns the env's first prompt (task, observation, actions).

        Args:
            seed: the task seed; every rollout of a GRPO group gets the same one (same task, same state)
            task_index: optional explicit task (default: seed mod the split's size)
            **row: the other dataset columns (ignored)
        """
        if seed is None:
            raise ConfigError("the dataset needs a 'seed' column (task_dataset() writes one): it picks the task of a group")
        options = {"task_index": int(task_index)} if task_index is not None else None
        obs, _info = self._env.reset_result(seed=int(seed), options=options)
        self._done = False
        self._record = EpisodeRecord(env_id=self._env.env_spec.id, split=self._env.split, seed=int(seed),
                                     task_index=task_index, task=obs.task)
        return self._env.prompt()

    def take_action(self, action: str) -> str:
        """Take one action in the environment and see what happens.

        Args:
            action: the action to take, e.g. one of the admissible actions listed in the observation

        Returns:
            The next observation, with the admissible actions when the environment lists them.
        """
        if self._record is None:
            raise ResetNeededError("reset the environment before taking actions")
        if self._done:
            raise ValueError("the episode is over; no more actions are accepted")
        before = self._env.observation
        prompt = self._env.prompt()
        r = self._env.step_result(action)
        self._done = r.done
        penalty = self._env.protocol.penalty_for(r.info.parse_status)
        rec = self._record
        rec.turns.append(TurnRecord(
            turn=before.step, observation=before.text, state_hash=before.state_hash, prompt=prompt, response=action,
            action=r.info.action, parse_status=r.info.parse_status, format_valid=r.info.format_valid, reward=r.reward,
            native_reward=r.reward + penalty, penalty=penalty, terminated=r.terminated, truncated=r.truncated,
            won=r.info.won, score=r.info.score, info_extra=r.info.extra,
        ))
        rec.won, rec.score = r.info.won, r.info.score
        lines = [r.observation.text]
        if r.info.parse_status.value != "ok":
            lines.append(f"(your action was not accepted: {r.info.parse_status.value})")
        if r.done:
            lines.append("The episode is over: " + ("task solved." if r.info.won else "task not solved."))
        elif r.observation.admissible_actions:
            lines.append("Admissible actions: " + ", ".join(r.observation.admissible_actions))
        return "\n".join(lines)

    def get_reward(self) -> float:
        """The episode's reward: the sum of the env's step rewards (invalid-action penalties included)."""
        return 0.0 if self._record is None else float(self._record.total_reward)

    @property
    def record(self) -> EpisodeRecord | None:
        """The episode so far as an `EpisodeRecord` (a property, so TRL does not expose it as a tool)."""
        return self._record

    @property
    def env(self) -> Any:
        """The underlying ARLArena env."""
        return self._env


def environment_factory(env_id: str, **env_kwargs: Any) -> functools.partial:
    """A no-argument, picklable callable that builds one `ArlArenaTRLEnv` of `env_id` (TRL's async
    rollout worker pickles the factory, so this is a `functools.partial`, not a closure)."""
    from arlarena_envs.registry import get_spec

    get_spec(env_id)  # fail here, with the list of ids, on a typo
    return functools.partial(ArlArenaTRLEnv, env_id, env_kwargs)


def task_dataset(env_id: str, num_tasks: int, start: int = 0, instructions: str = TOOL_INSTRUCTIONS):
    """A `datasets.Dataset` with one row per task: `prompt` (a user message with `instructions`;
    reset appends the env's prompt to it) and `seed` (start .. start+num_tasks-1; the env picks
    task seed mod its split's size; choose the split with `environment_factory(env_id, split=...)`)."""
    try:
        from datasets import Dataset
    except ImportError as e:  # pragma: no cover - depends on the install
        from arlarena_envs.errors import MissingDependencyError

        raise MissingDependencyError("task_dataset needs `datasets`: pip install 'arlarena-envs[trl]'") from e
    from arlarena_envs.registry import get_spec

    get_spec(env_id)
    if num_tasks < 1:
        raise ConfigError(f"num_tasks must be >= 1, got {num_tasks}")
    return Dataset.from_dict({
        "prompt": [[{"role": "user", "content": instructions + "\n\n"}] for _ in range(num_tasks)],
        "seed": list(range(start, start + num_tasks)),
    })
