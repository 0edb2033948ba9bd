"""`TextEnv`: the Gymnasium base class of every ARLArena env.

The base class owns everything that must be identical across envs: seeding and task choice,
parsing and the invalid-action policy, step counting and truncation, reward scaling, the
`info` keys, state hashes, the history and the prompt. A subclass only implements the game
(see the hooks at the bottom and DESIGN.md).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from pydantic import ValidationError

from arlarena_envs.contract import (
    EnvSpec,
    InvalidActionPolicy,
    Observation,
    ParsedAction,
    ParseStatus,
    Protocol,
    SplitSpec,
    StepInfo,
    StepResult,
)
from arlarena_envs.errors import InvalidActionError, InvalidArgumentError, ResetNeededError, SpecError
from arlarena_envs.hashing import state_hash
from arlarena_envs.parsing import looks_tagged, match_admissible, parse_bare, parse_response
from arlarena_envs.prompts import render_prompt
from arlarena_envs.registry import get_spec
from arlarena_envs.spaces import UnicodeText
from arlarena_envs.unicode import clean_text

OBS_MAX_CHARS = 262_144
ACTION_MAX_CHARS = 1_000_000
_OPTION_KEYS = {"task_index", "split"}


class TextEnv(gym.Env[str, str]):
    """A text env: string observations, string actions (raw model text or a bare action)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 4}
    default_env_id: ClassVar[str] = ""  # the registry id used when the env is built directly

    def __init__(
        self,
        *,
        spec: EnvSpec | None = None,
        env_id: str | None = None,
        split: str | None = None,
        render_mode: str | None = None,
        **protocol_overrides: Any,
    ):
        # `create_env` hands the spec in; an env built directly looks its own id up
        self.env_spec: EnvSpec = spec if spec is not None else get_spec(env_id or self.default_env_id)
        unknown = set(protocol_overrides) - set(Protocol.model_fields)
        if unknown:
            raise InvalidArgumentError(
                f"{self.env_spec.id} got unexpected keyword arguments {sorted(unknown)}; valid: env kwargs "
                f"{self.env_kwarg_names()}, protocol fields {sorted(Protocol.model_fields)}, split, render_mode"
            )
        try:
            self.protocol: Protocol = self.env_spec.protocol.with_overrides(protocol_overrides)
        except ValidationError as e:
            raise InvalidArgumentError(f"invalid protocol override for {self.env_spec.id}: {_one_line(e)}") from None
        self.split = split or self.env_spec.default_split
        self._check_split(self.split)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise InvalidArgumentError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.observation_space = UnicodeText(OBS_MAX_CHARS)
        self.action_space = UnicodeText(ACTION_MAX_CHARS)
        self._ready = False
        self._steps = 0
        self._history: list[tuple[str, str]] = []
        self._last: Observation | None = None
        self._task_index = 0
        self._terminated = False

    # ------------------------------------------------------------------ Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        obs, info = self.reset_result(seed=seed, options=options)
        return obs.text, info.to_info()

    def step(self, action: str | bytes | ParsedAction) -> tuple[str, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self._advance(action)
        info["parse_status"] = info["parse_status"].value
        return obs.text, reward, terminated, truncated, info

    def render(self) -> str | None:
        text = self._last.text if self._last is not None else ""
        if self.render_mode == "human":
            print(text)
            return None
        return text

    # ------------------------------------------------------------------ typed API

    def reset_result(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, StepInfo]:
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
            raise InvalidArgumentError(f"seed must be a non-negative int, got {seed!r}")
        super().reset(seed=None if seed is None else int(seed))
        options = dict(options or {})
        unknown = set(options) - _OPTION_KEYS
        if unknown:
            raise InvalidArgumentError(f"unknown reset options {sorted(unknown)}; allowed: {sorted(_OPTION_KEYS)}")
        split = options.get("split", self.split)
        spl = self._check_split(split)
        if "task_index" in options:
            idx = options["task_index"]
            if not isinstance(idx, (int, np.integer)) or isinstance(idx, bool) or not 0 <= idx < spl.size:
                raise InvalidArgumentError(f"task_index must be an int in [0, {spl.size}) for split {split!r}, got {idx!r}")
            idx = int(idx)
        elif seed is not None:
            idx = int(seed) % spl.size
        else:
            idx = int(self.np_random.integers(spl.size))
        self._task_index = idx
        self._steps, self._history, self._terminated = 0, [], False
        self._load_task(spl.start + idx, split, self.np_random)
        self._ready = True
        self._last = self._observation()
        info = StepInfo(
            won=False,
            score=float(self._score()),
            state_hash=self._last.state_hash,
            admissible_actions=self._last.admissible_actions,
            step=0,
            task=self._last.task,
            extra=self._extra_info(),
        )
        return self._last, info

    def step_result(self, action: str | bytes | ParsedAction) -> StepResult:
        obs, reward, terminated, truncated, info = self._advance(action)
        return StepResult(observation=obs, reward=reward, terminated=terminated, truncated=truncated, info=StepInfo(**info))

    def _advance(self, action: str | bytes | ParsedAction) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """One step; the info comes back as a plain dict with the StepInfo fields (in order).

        Atomic: parsing is pure, and everything that mutates (the game's `_apply`, the step count)
        runs inside a snapshot. If anything raises, an env with `_snapshot_state` is rolled back to
        exactly the state before the step (it can keep stepping); an env without one (an external
        engine) is closed for stepping until the next reset. The history and the last observation
        change only once the whole step has succeeded."""
        if not self._ready:
            raise ResetNeededError("call reset() before step(), and again after the episode ended")
        parsed = self.parse_action(action)
        before = self._last
        assert before is not None
        policy = self.protocol.invalid_action_policy
        penalty = self.protocol.penalty_for(parsed.status)
        native, executed, terminate = 0.0, None, False
        if parsed.status is ParseStatus.OK:
            executed = parsed.action
        elif policy is InvalidActionPolicy.PENALTY:
            if parsed.action is not None:
                executed = self._canonical_action(parsed.action)
        elif policy is InvalidActionPolicy.TERMINATE:
            terminate = True
        base = (self._steps, self._terminated)
        snapshot = self._snapshot_state()
        try:
            if terminate:
                self._terminated = True
            if executed is not None:
                native = float(self._apply(executed))
            self._steps += 1
            terminated = bool(self._terminated)
            truncated = not terminated and self._steps >= self.protocol.max_steps
            last = self._observation()
            info = {
                "won": bool(self._won()),
                "score": float(self._score()),
                "parse_status": parsed.status,
                "valid_action": parsed.status is ParseStatus.OK,
                "format_valid": parsed.format_valid,
                "state_hash": last.state_hash,
                "admissible_actions": list(last.admissible_actions) if last.admissible_actions is not None else None,
                "step": self._steps,
                "task": last.task,
                "action": executed,
                "extra": self._extra_info(),
            }
            reward = float(native * self.protocol.reward_scale - penalty)
        except BaseException:
            self._steps, self._terminated = base
            if snapshot is None:
                self._ready = False  # the engine may have moved: refuse to step until reset
            else:
                self._restore_state(snapshot)
            raise
        self._history.append((before.text, parsed.action if parsed.action is not None else ""))
        self._last = last
        if terminated or truncated:
            self._ready = False
        return last, reward, terminated, truncated, info

    def parse_action(self, action: str | bytes | ParsedAction) -> ParsedAction:
        """Project raw model text (or a bare action) to an action of this env, by the protocol."""
        if isinstance(action, ParsedAction):
            action = _clean_parsed(action)
            size = len(action.action or "") + len(action.think or "")
            if size > self.protocol.max_action_chars:  # the limit raw text has: no way around it
                return ParsedAction(action=None, status=ParseStatus.TRUNCATED, format_valid=False, raw_length=size)
            if action.status is ParseStatus.OK and (action.action is None or self._canonical_action(action.action) is None):
                return action.model_copy(update={"status": ParseStatus.INADMISSIBLE})
            if action.status is ParseStatus.OK:
                return action.model_copy(update={"action": self._canonical_action(action.action)})
            return action
        if isinstance(action, (bytes, bytearray)):
            action = bytes(action).decode("utf-8", errors="replace")
        if not isinstance(action, str):
            raise InvalidActionError(f"an action must be str, bytes or ParsedAction, got {type(action).__name__}")
        action = clean_text(action)  # the text rule (unicode.py): lone surrogates -> U+FFFD
        fmt = self.protocol.action_format
        if fmt == "bare" or (fmt == "auto" and not looks_tagged(action)):
            if len(action) > self.protocol.max_action_chars:
                return ParsedAction(action=None, status=ParseStatus.TRUNCATED, format_valid=False, raw_length=len(action))
            canon = self._canonical_action(action)
            if canon is not None:  # the common case, kept cheap
                return ParsedAction(
                    action=canon, status=ParseStatus.OK, format_valid=True, think=None, raw_length=len(action)
                )
            parsed = parse_bare(action)
            if parsed.status is ParseStatus.OK:
                return parsed.model_copy(update={"status": ParseStatus.INADMISSIBLE})
            return parsed
        parsed = parse_response(action, self.protocol.parse_mode, max_chars=self.protocol.max_action_chars)
        if parsed.status is ParseStatus.OK:
            canon = self._canonical_action(parsed.action or "")
            if canon is None:
                return parsed.model_copy(update={"status": ParseStatus.INADMISSIBLE})
            return parsed.model_copy(update={"action": canon})
        return parsed

    # ------------------------------------------------------------------ conveniences

    @property
    def observation(self) -> Observation | None:
        """The last observation (None before the first reset)."""
        return self._last

    @property
    def history(self) -> list[tuple[str, str]]:
        return list(self._history)

    @property
    def task_index(self) -> int:
        return self._task_index

    def prompt(self) -> str:
        """The paper-style prompt for the current turn (the spec's template, last H steps)."""
        if self._last is None:
            raise ResetNeededError("call reset() before prompt()")
        return render_prompt(
            self.protocol.template_id,
            task=self._last.task,
            observation=self._last.text,
            admissible_actions=self._last.admissible_actions,
            history=self._history,
            step_count=self._steps,
            history_length=self.protocol.history_length,
        )

    def n_tasks(self, split: str | None = None) -> int:
        return self._check_split(split or self.split).size

    def _check_split(self, split: str) -> SplitSpec:
        try:
            return self.env_spec.splits[split]
        except KeyError:
            raise SpecError(f"{self.env_spec.id} has no split {split!r}; splits: {sorted(self.env_spec.splits)}") from None

    def _observation(self) -> Observation:
        return Observation(
            text=self._observe(),
            step=self._steps,
            task=self._task_description(),
            admissible_actions=self._admissible_actions(),
            state_hash=self._state_hash(),
        )

    def _state_hash(self) -> str:
        """Hash of `_state_key()`; envs may override to cache it."""
        return state_hash(self._state_key())

    def _canonical_action(self, action: str) -> str | None:
        """The executable form of `action`, or None if this env does not accept it now.

        Default: case/whitespace-insensitive lookup in the admissible list; envs without a
        list accept any non-empty text. Override for templated actions (e.g. search[...])."""
        admissible = self._admissible_actions()
        if admissible is None:
            return action.strip() or None
        if action in admissible:
            return action
        return match_admissible(action, admissible)

    # ------------------------------------------------------------------ hooks for subclasses

    def _load_task(self, task_id: int, split: str, rng: np.random.Generator) -> None:
        """Build the episode for task `task_id` (the split's start + index)."""
        raise NotImplementedError

    def _observe(self) -> str:
        raise NotImplementedError

    def _task_description(self) -> str:
        raise NotImplementedError

    def _admissible_actions(self) -> list[str] | None:
        return None

    def _snapshot_state(self) -> Any | None:
        """A copy of the game state that `_restore_state` can put back (None: no snapshot possible,
        a failed step then closes the episode). Taken before every step, so keep it cheap."""
        return None

    def _restore_state(self, snapshot: Any) -> None:
        """Put back the state captured by `_snapshot_state` (after a step raised)."""
        raise NotImplementedError

    @classmethod
    def env_kwarg_names(cls) -> list[str]:
        """The keyword arguments the env's constructors accept (besides the protocol fields)."""
        names: set[str] = set()
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is TextEnv:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.kind is inspect.Parameter.KEYWORD_ONLY or (p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name != "self"):
                    names.add(p.name)
        return sorted(names)

    def _state_key(self) -> Any:
        """A JSON-able value identifying the true env state (not its rendering)."""
        raise NotImplementedError

    def _apply(self, action: str) -> float:
        """Execute an accepted action; return the native reward; set self._terminated when done."""
        raise NotImplementedError

    def _won(self) -> bool:
        return False

    def _score(self) -> float:
        return float(self._won())

    def _extra_info(self) -> dict[str, Any]:
        return {}

    def oracle_action(self) -> str | None:
        """The expert's next action in the current state (None if the env has no expert)."""
        return None


def _clean_parsed(action: ParsedAction) -> ParsedAction:
    """A ParsedAction given by the caller, with its text fields under the text rule (unicode.py)."""
    fields = {k: clean_text(v) for k in ("action", "think") if isinstance(v := getattr(action, k), str)}
    return action.model_copy(update=fields) if fields else action


def _one_line(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
