"""The ARLArena contract: every value that crosses a boundary (env step, wire message, spec file,
trajectory record, training log row) is one of these pydantic models.

`python -m arlarena_envs.contract OUT_DIR` writes their JSON schemas.
"""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from arlarena_envs.hashing import sha256_hex

JsonDict = dict[str, Any]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Frozen(_Model):
    """Spec models are immutable: `get_spec(id).protocol.max_steps = 3` raises (registry.get_spec
    also hands out deep copies, so their dicts and lists cannot be edited in place either)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------------------------


class ParseStatus(str, enum.Enum):
    """Outcome of parsing one model response (a fixed taxonomy, comparable across envs)."""

    OK = "ok"
    NO_TAG = "no_tag"  # no <action> block, or a required tag (strict: <think>) is missing / misplaced
    MULTIPLE_ACTIONS = "multiple_actions"  # more than one <action> block (or nested / duplicated tags)
    INADMISSIBLE = "inadmissible"  # well formed, but the env does not accept this action here
    TRUNCATED = "truncated"  # an opened tag is never closed (generation hit its length limit)
    LANGUAGE_VIOLATION = "language_violation"  # CJK characters (strict mode, as the paper)
    EMPTY = "empty"  # empty response, or an empty <action></action>


class ParseMode(str, enum.Enum):
    STRICT = "strict"  # whole response = <think>..</think><action>..</action>, nothing else
    LENIENT = "lenient"  # any text around one <action>..</action> block is fine


class InvalidActionPolicy(str, enum.Enum):
    PENALTY = "penalty"  # reward -= penalty; an extractable, accepted action is still executed
    NOOP = "noop"  # nothing happens, no penalty
    TERMINATE = "terminate"  # the episode ends, with the penalty


class ParsedAction(_Model):
    """A response projected to an env action. `action` is None when nothing could be extracted."""

    action: str | None
    status: ParseStatus
    format_valid: bool = Field(description="the response follows the required tag format")
    think: str | None = None
    raw_length: int = Field(0, description="length of the raw response in characters")


# --------------------------------------------------------------------------------------------
# Observations and steps
# --------------------------------------------------------------------------------------------


class Observation(_Model):
    text: str = Field(description="the env's current observation text (not the whole prompt)")
    step: int = Field(ge=0, description="number of steps taken in this episode so far")
    task: str = Field(description="the task description (goal) of the episode")
    admissible_actions: list[str] | None = None
    state_hash: str = Field(description="canonical hash of the true env state (GiGPO anchors)")


INFO_KEYS = (
    "won",
    "score",
    "parse_status",
    "valid_action",
    "format_valid",
    "state_hash",
    "admissible_actions",
    "step",
    "task",
    "action",
    "extra",
)


class StepInfo(_Model):
    """The `info` dict of every reset/step; the same keys in every env (`INFO_KEYS`)."""

    won: bool = False
    score: float = Field(0.0, description="env-specific task score (WebShop native reward, ...)")
    parse_status: ParseStatus = ParseStatus.OK
    valid_action: bool = True
    format_valid: bool = True
    state_hash: str = ""
    admissible_actions: list[str] | None = None
    step: int = 0
    task: str = ""
    action: str | None = Field(None, description="the action executed (None if none)")
    extra: JsonDict = Field(default_factory=dict)

    def to_info(self) -> JsonDict:
        d = self.model_dump()
        d["parse_status"] = self.parse_status.value
        return d

    @classmethod
    def from_info(cls, info: JsonDict) -> "StepInfo":
        return cls.model_validate({k: info[k] for k in INFO_KEYS if k in info})


class StepResult(_Model):
    observation: Observation
    reward: float
    terminated: bool
    truncated: bool
    info: StepInfo

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


class TurnRecord(_Model):
    """One turn of an episode: what the agent saw, said and got. The episode runner
    (`arlarena_envs.episodes`) writes it; the trainer, behaviour cloning, the leaderboard, the
    checker and the verl/TRL bridges read it as is."""

    turn: int = Field(ge=0, description="0-based turn index (steps taken before this turn)")
    observation: str = Field(description="the observation the prompt was built from (GiGPO anchor text)")
    state_hash: str = Field(description="true-state hash of that observation (GiGPO anchor)")
    prompt: str | None = Field(None, description="the rendered prompt the policy answered (None when not kept)")
    response: str
    action: str | None = Field(description="the action the env executed (None if none)")
    parse_status: ParseStatus
    format_valid: bool
    reward: float = Field(description="what the env paid: native reward x reward_scale - penalty")
    native_reward: float = Field(description="the reward before the invalid-action penalty (reward + penalty)")
    penalty: float = Field(0.0, ge=0.0, description="the invalid-action penalty the env subtracted")
    terminated: bool
    truncated: bool
    won: bool = Field(False, description="info.won after the step")
    score: float = Field(0.0, description="info.score after the step")
    info_extra: JsonDict = Field(default_factory=dict)
    prompt_ids: list[int] | None = Field(None, description="prompt token ids (chat template applied), when a model answered")
    response_ids: list[int] | None = Field(None, description="response token ids (eos included when generated)")
    logprobs: list[float] | None = Field(None, description="the engine's log-prob of each response token, when it reports them")

    @property
    def valid_action(self) -> bool:
        return self.parse_status is ParseStatus.OK

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


class EpisodeRecord(_Model):
    """One episode: provenance of the env plus every turn, in order."""

    env_id: str
    split: str | None = Field(description="the split the task came from (None: the env's own split)")
    seed: int | None
    task_index: int | None = Field(description="the task index when it was chosen explicitly (else seed mod split size)")
    task: str
    group: int = Field(0, description="GRPO group id: the episodes reset with the same task seed share it")
    episode: int = Field(0, description="episode id, unique within a batch (verl's traj_uid)")
    turns: list[TurnRecord] = Field(default_factory=list)
    won: bool = False
    score: float = 0.0
    truncated_reason: str | None = Field(None, description="why the episode was cut (dead worker, the policy had no action)")

    @property
    def total_reward(self) -> float:
        """Sum of the rewards the env paid (invalid penalties included)."""
        return float(sum(t.reward for t in self.turns))

    @property
    def native_reward(self) -> float:
        """Sum of the rewards before the invalid-action penalty (the filter's and GRPO's R)."""
        return float(sum(t.native_reward for t in self.turns))

    @property
    def length(self) -> int:
        return len(self.turns)


# --------------------------------------------------------------------------------------------
# Specs (registry/*.yaml)
# --------------------------------------------------------------------------------------------


class Protocol(_Frozen):
    """How an env is played: the part of a spec that makes numbers comparable."""

    max_steps: int = Field(50, ge=1)
    history_length: int = Field(2, ge=0, description="H: past observation/action pairs in the prompt")
    template_id: str = Field(description="prompt template id, e.g. 'sokoban/v1' (see prompts.py)")
    reward_scale: float = Field(1.0, description="multiplies the env's native reward")
    invalid_action_policy: InvalidActionPolicy = InvalidActionPolicy.PENALTY
    invalid_action_penalty: float = Field(0.1, ge=0.0, description="subtracted per invalid step")
    parse_mode: ParseMode = ParseMode.STRICT
    action_format: Literal["auto", "tagged", "bare"] = "auto"
    max_action_chars: int = Field(1_000_000, ge=1, description="longer responses are cut and parse as truncated")

    def penalty_for(self, status: ParseStatus) -> float:
        """The invalid-action penalty of a step whose response parsed as `status` (the one rule:
        the env subtracts it, the episode runner records it)."""
        if status is ParseStatus.OK or self.invalid_action_policy is InvalidActionPolicy.NOOP:
            return 0.0
        return self.invalid_action_penalty

    def with_overrides(self, overrides: dict[str, Any]) -> "Protocol":
        """This protocol with the protocol keys of `overrides` (make kwargs) replaced; other keys
        (split, env-specific kwargs) are ignored."""
        upd = {k: v for k, v in overrides.items() if k in Protocol.model_fields}
        return Protocol.model_validate({**self.model_dump(), **upd})


class SplitSpec(_Frozen):
    """A split is a range of task indices; `kind` says what an index means.

    seeds: index i -> procedural level seed `start + i` (Sokoban);
    tasks: index i -> item `start + i` of the env's task list (WebShop goals, ALFWorld games)."""

    kind: Literal["seeds", "tasks"]
    start: int = Field(0, ge=0)
    stop: int = Field(ge=1)
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> "SplitSpec":
        if self.stop <= self.start:
            raise ValueError(f"split stop ({self.stop}) must be > start ({self.start})")
        return self

    @property
    def size(self) -> int:
        return self.stop - self.start


class DataFile(_Frozen):
    name: str
    sha256: str
    description: str = ""


class GoldenFingerprint(_Frozen):
    split: str
    seed: int
    actions: list[str]
    sha256: str


class SamplingParams(_Frozen):
    """How a model samples one response (one turn): the leaderboard protocol's and the
    trainer's (`rollout.sampling`, `rollout.eval_sampling`). Defaults: the paper's evaluation
    sampling (T 0.6, top_p 0.95, top_k 20)."""

    temperature: float = Field(0.6, ge=0.0, description="0 means greedy")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling")
    top_k: int = Field(20, description="-1 (or 0) disables top-k")
    max_new_tokens: int = Field(512, ge=1, description="max tokens per response")


class LeaderboardProtocol(_Frozen):
    split: str
    episodes: int = Field(ge=1)
    sampling: SamplingParams = Field(default_factory=SamplingParams)


class CheckSettings(_Frozen):
    """How `arlarena check` exercises this env (slow engines may lower the counts, stated here)."""

    resets: int = Field(1000, ge=10, description="resets in the RSS/fd growth check")
    max_rss_growth_mb: float = Field(20.0, gt=0)
    steps_per_transcript: int = Field(30, ge=1)


class ClientKwarg(_Frozen):
    """One make() kwarg that clients of an env server may set (the spec's `client_kwargs:`).

    A client value must have exactly `type` (strict: no "1" for 1, no true for 1, no 1.0 for 1),
    lie in [`min`, `max`] (numbers; every element of an `int_list`), be one of `choices` when
    given, and a `str` at most `max_length` characters. Paths, data switches and code-loading
    kwargs (cache_dir, data_dir, verify_data, spacy_model) never belong here: only the operator
    sets those (`arlarena serve --allow-kwarg NAME` lets clients set one anyway)."""

    type: Literal["int", "float", "bool", "str", "int_list"]
    min: float | None = None
    max: float | None = None
    choices: list[Any] | None = None
    length: int | None = Field(None, ge=1, description="int_list: exact number of elements")
    max_length: int = Field(256, ge=1, description="str: longest accepted value")
    cache_key: bool = Field(
        False, description="the env builds and keeps data per distinct value (the server bounds how many it holds)"
    )
    description: str = ""

    def problem(self, value: Any) -> str | None:
        """Why `value` is not acceptable (None when it is)."""
        scalar = {"int": int, "float": (int, float), "bool": bool, "str": str}
        if self.type == "int_list":
            if not isinstance(value, list) or any(not isinstance(v, int) or isinstance(v, bool) for v in value):
                return f"must be a list of integers, got {value!r}"[:200]
            if self.length is not None and len(value) != self.length:
                return f"must have {self.length} elements, got {len(value)}"
            items: list[Any] = value
        else:
            want = scalar[self.type]
            if not isinstance(value, want) or (self.type != "bool" and isinstance(value, bool)):
                return f"must be a JSON {self.type}, got {type(value).__name__} {value!r}"[:200]
            if self.type == "str" and len(value) > self.max_length:
                return f"must be at most {self.max_length} characters"
            items = [value] if self.type in ("int", "float") else []
        for v in items:
            if v != v or (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
                return f"must be in [{self.min}, {self.max}], got {v!r}"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {self.choices}, got {value!r}"[:300]
        return None


class EnvSpec(_Frozen):
    """One registry file: everything needed to build, play, check and score an env version."""

    id: str = Field(pattern=r"^arlarena/[A-Za-z][\w.-]*-v\d+$")
    entry_point: str = Field(pattern=r"^[\w.]+:\w+$")
    description: str = ""
    kwargs: JsonDict = Field(default_factory=dict)
    protocol: Protocol
    splits: dict[str, SplitSpec]
    default_split: str = "train"
    data: list[DataFile] = Field(default_factory=list)
    golden: list[GoldenFingerprint] = Field(default_factory=list)
    leaderboard: LeaderboardProtocol | None = None
    requires: list[str] = Field(default_factory=list, description="pip extras the env needs")
    check: CheckSettings = Field(default_factory=CheckSettings)
    client_kwargs: dict[str, ClientKwarg] = Field(
        default_factory=dict,
        description="make() kwargs env-server clients may set, with their ranges (split and protocol fields always)",
    )

    @field_validator("splits")
    @classmethod
    def _nonempty(cls, v: dict[str, SplitSpec]) -> dict[str, SplitSpec]:
        if not v:
            raise ValueError("a spec needs at least one split")
        return v

    @model_validator(mode="after")
    def _check(self) -> "EnvSpec":
        if self.default_split not in self.splits:
            raise ValueError(f"default_split {self.default_split!r} is not one of {sorted(self.splits)}")
        for g in self.golden:
            if g.split not in self.splits:
                raise ValueError(f"golden fingerprint uses unknown split {g.split!r}")
        if self.leaderboard and self.leaderboard.split not in self.splits:
            raise ValueError(f"leaderboard split {self.leaderboard.split!r} is not a split")
        return self

    @property
    def name(self) -> str:
        return self.id.split("/", 1)[1]

    @property
    def version(self) -> int:
        return int(self.id.rsplit("-v", 1)[1])

    def fingerprint(self) -> str:
        """One hash over the golden fingerprints: changes whenever env behaviour changes."""
        return sha256_hex(json.dumps(sorted(g.sha256 for g in self.golden)))[:16]


# --------------------------------------------------------------------------------------------
# Training log rows (metrics.jsonl): written by the trainer, read by the stability evaluator
# --------------------------------------------------------------------------------------------


class MetricRecord(BaseModel):
    """One line of a run's `metrics.jsonl`. Unknown extra keys are allowed (and kept).

    Every field except `step` may be missing (None) on a given line; the evaluator treats a
    missing value as "not measured at this step", never as zero."""

    model_config = ConfigDict(extra="allow")

    step: int = Field(description="RL step (one policy update round) starting at 1; BC steps are phase='bc'")
    phase: Literal["bc", "rl", "eval"] = "rl"
    time_s: float | None = Field(None, description="wall seconds since the run started")
    success: float | None = Field(None, description="rollout success rate of this step's batch (0..1)")
    score: float | None = Field(None, description="mean episode reward of this step's batch")
    eval_success: float | None = Field(None, description="success on the fixed eval seeds (0..1)")
    eval_score: float | None = Field(None, description="mean eval episode reward")
    grad_norm: float | None = Field(None, description="global grad norm before clipping")
    entropy: float | None = Field(None, description="mean token entropy of the responses")
    kl_ref: float | None = Field(None, description="k3 KL to the reference policy (masked mean)")
    ppo_kl: float | None = Field(None, description="mean(log pi_old - log pi), k1")
    clipfrac_high: float | None = Field(None, description="fraction of tokens clipped at 1+eps_high")
    clipfrac_low: float | None = Field(None, description="fraction of tokens clipped at 1-eps_low (dual clip for PPO)")
    is_ratio_mean: float | None = None
    is_ratio_min: float | None = None
    is_ratio_max: float | None = None
    neg_adv_low_is_frac: float | None = Field(
        None, description="fraction of samples with advantage < 0 and sequence IS ratio < 1 (finding 2)"
    )
    masked_seqs: float | None = Field(None, description="sequences dropped by the sequence mask")
    valid_format_ratio: float | None = None
    valid_action_ratio: float | None = None
    response_length: float | None = Field(None, description="mean response length in tokens")
    filtered_groups: float | None = Field(None, description="zero-variance groups dropped this step")
    kept_groups: float | None = None
    loss: float | None = None
    pg_loss: float | None = None
    lr: float | None = None
    skipped_update: bool | None = Field(None, description="an update was skipped (non-finite grad)")
    gen_batches: float | None = Field(None, description="rollout batches generated this step (dynamic filtering re-rolls)")
    informative_groups: float | None = Field(
        None, description="groups with non-identical episode rewards among all rolled this step (dynamic filtering's supply)"
    )
    num_samples: int | None = Field(None, description="turn rows in this step's update")
    adv_mean: float | None = Field(None, description="masked mean advantage of the update's rows")
    neg_adv_frac: float | None = Field(None, description="fraction of rows with a negative advantage")
    off_policy_step: float | None = Field(None, description="mini-batches per epoch minus 1 (verl actor/off_policy_step)")
    monitor_action: Literal["none", "stop", "rollback", "tighten"] | None = Field(
        None, description="the stability monitor's decision at this step (written when it acted or alarmed)"
    )
    monitor_reason: str | None = None
    monitor_alarms: list[Any] | None = Field(None, description="the monitor's alarms, as JSON")
    rollback_to: int | None = Field(None, description="the checkpoint step restored by a rollback")
    clip_scale: float | None = Field(None, description="cumulative clip-range scale after a 'tighten'")


MODELS_WITH_SCHEMA: dict[str, type[BaseModel]] = {
    "ParsedAction": ParsedAction,
    "Observation": Observation,
    "StepInfo": StepInfo,
    "StepResult": StepResult,
    "TurnRecord": TurnRecord,
    "EpisodeRecord": EpisodeRecord,
    "EnvSpec": EnvSpec,
    "MetricRecord": MetricRecord,
}


def export_json_schemas(out_dir: str | Path) -> list[Path]:
    """Write `<Model>.schema.json` for every boundary model; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in MODELS_WITH_SCHEMA.items():
        p = out / f"{name}.schema.json"
        p.write_text(json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n")
        written.append(p)
    return written


if __name__ == "__main__":  # pragma: no cover
    for p in export_json_schemas(sys.argv[1] if len(sys.argv) > 1 else "schemas"):
        print(p)
