"""Leaderboard records: one `EpisodeResult` per episode on disk, one `LeaderboardRow` per
(env, policy), and the `Provenance` that makes a row comparable with the others."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from arlarena_envs.contract import EnvSpec, EpisodeRecord, Protocol, SamplingParams, TurnRecord
from arlarena_envs.errors import ArlArenaError


class ProvenanceMismatchError(ArlArenaError, ValueError):
    """A result row (or episode file) was produced under another spec / protocol than the current one."""

    def __init__(self, message: str, fields: Sequence[str] = ()):
        super().__init__(message)
        self.fields = list(fields)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def data_checksum(spec: EnvSpec) -> str:
    """sha256 (16 hex) over the sorted (name, sha256) pairs of the spec's data files ('' -> hash of [])."""
    pairs = sorted((d.name, d.sha256) for d in spec.data)
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]


class TrainingProvenance(_Model):
    """Where a trained policy came from: the training run, how its checkpoint was chosen, and the
    files behind the row (paths relative to the results folder, posix)."""

    run_name: str = Field(description="the training run's folder name")
    algorithm: str = Field(description="config algorithm.name (sampo, grpo, ...)")
    trained_env_id: str = Field(description="config env.env_id: the env the policy was trained on")
    config_digest: str = Field(description="sha256 (16 hex) of the run's resolved config (config.json, canonical JSON)")
    seed: int = Field(description="config trainer.seed")
    steps_trained: int = Field(description="RL steps the run completed (result.json steps_done, else the last rl step logged)")
    total_steps: int = Field(description="config trainer.total_steps (the planned budget)")
    checkpoint_rule: str = Field(description="'last' (final checkpoint), 'best-eval' (highest in-training eval success) or 'step:N'")
    checkpoint_step: int = Field(description="the RL step of the evaluated checkpoint (0 = after behaviour cloning)")
    checkpoint_eval_success: float | None = Field(None, description="the trainer's own eval success at that step, if it evaluated there")
    code_commit: str | None = Field(None, description="git commit of the code")
    code_commit_source: str = Field(description="'training run' (recorded by the run's launcher) or 'evaluation' (the tree that evaluated it)")
    weights_sha256: str | None = Field(None, description="sha256 (16 hex) of the evaluated model.safetensors")
    weights_in_repo: bool = Field(False, description="the evaluated weights are committed under `artefacts['policy']`")
    regenerate: str = Field(description="the command that re-trains this run (the weights when they are not committed)")
    artefacts: dict[str, str] = Field(default_factory=dict, description="name -> path relative to the results folder (config, metrics, result, stability report, policy)")


class Provenance(_Model):
    """Everything a number depends on. Rows compare only when the spec-derived fields match."""

    package_version: str
    env_id: str
    env_version: int
    golden_fingerprint: str = Field(description="EnvSpec.fingerprint(): changes with env behaviour")
    data_checksum: str = Field(description="hash of the spec's data file checksums")
    template_id: str
    protocol: Protocol
    split: str
    episodes: int
    sampling: SamplingParams
    checkpoint_rule: str = Field(description="which checkpoint was evaluated ('n/a' for random/oracle; e.g. 'final', 'best-val')")
    overrides: dict[str, Any] = Field(default_factory=dict, description="deviations from the protocol (non-empty = not comparable)")
    policy: dict[str, Any] = Field(default_factory=dict, description="the policy's own description (model path, endpoint)")
    samples_per_task: int = Field(1, ge=1, description="episodes played per task (n of pass@k); episode k plays task k mod episodes")
    evaluated_at: str | None = Field(None, description="UTC date-time the row was written (ISO 8601)")
    eval_code_commit: str | None = Field(None, description="git commit of the evaluating tree, when it is a git checkout")
    training: TrainingProvenance | None = Field(None, description="trained policies only: the run behind the checkpoint")

    def episode_key(self) -> str:
        """Hash of what each episode depends on (not the episode count): guards resumed runs.
        With several samples per task the task count fixes which task an episode index plays,
        so it enters the key then; with one sample the key is what it always was."""
        d = self.model_dump(
            mode="json",
            exclude={"episodes", "package_version", "policy", "samples_per_task", "evaluated_at", "eval_code_commit", "training"},
        )
        d["overrides"] = {k: v for k, v in d["overrides"].items() if k != "episodes"}
        d["policy_spec"] = self.policy.get("spec")
        if self.samples_per_task > 1:
            d["tasks_x_samples"] = [self.episodes, self.samples_per_task]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def expected_provenance_fields(spec: EnvSpec) -> dict[str, Any]:
    """The spec-derived provenance values a comparable row must carry."""
    if spec.leaderboard is None:
        raise ArlArenaError(f"{spec.id} has no leaderboard protocol (spec.leaderboard); add one to its registry file")
    return {
        "env_id": spec.id,
        "env_version": spec.version,
        "golden_fingerprint": spec.fingerprint(),
        "data_checksum": data_checksum(spec),
        "template_id": spec.protocol.template_id,
        "protocol": spec.protocol,
        "split": spec.leaderboard.split,
        "episodes": spec.leaderboard.episodes,
        "sampling": spec.leaderboard.sampling,
        "overrides": {},
    }


def check_provenance(p: Provenance, spec: EnvSpec, what: str = "row") -> None:
    """Raise ProvenanceMismatchError naming every field that differs from the current spec; the
    message names each differing leaf in full (`protocol.max_steps: row 10 != spec 50`)."""
    bad = []
    diffs: list[str] = []
    for k, want in expected_provenance_fields(spec).items():
        have = getattr(p, k)
        if have != want:
            bad.append(k)
            diffs += _leaf_diffs(k, _plain(have), _plain(want))
    if bad:
        detail = "; ".join(diffs)
        raise ProvenanceMismatchError(
            f"{what} for {p.env_id} does not match the current spec ({detail}); re-run "
            f"`arlarena leaderboard evaluate --env {spec.id} --policy {p.policy.get('spec', '...')}` to refresh it",
            bad,
        )


def _plain(v: Any) -> Any:
    return v.model_dump(mode="json") if isinstance(v, BaseModel) else v


def _leaf_diffs(path: str, have: Any, want: Any, limit: int = 500) -> list[str]:
    """`path: row X != spec Y` for every differing leaf (dicts are walked key by key), values
    shown in full up to `limit` characters each (long values only: the field path is never cut)."""
    if isinstance(have, dict) and isinstance(want, dict):
        out: list[str] = []
        for k in sorted(set(have) | set(want), key=str):
            a, b = have.get(k, _ABSENT), want.get(k, _ABSENT)
            if a != b:
                out += _leaf_diffs(f"{path}.{k}", a, b, limit)
        return out

    def show(v: Any) -> str:
        if v is _ABSENT:
            return "(absent)"
        s = json.dumps(v, sort_keys=True, default=str)
        return s if len(s) <= limit else s[: limit - 3] + "..."

    return [f"{path}: row {show(have)} != spec {show(want)}"]


_ABSENT = object()


class Stat(_Model):
    """mean and standard error (sample std / sqrt(n); 0 for n = 1)."""

    n: int
    mean: float
    stderr: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stat":
        n = len(values)
        if n == 0:
            return cls(n=0, mean=0.0, stderr=0.0)
        mean = sum(values) / n
        if n == 1:
            return cls(n=1, mean=mean, stderr=0.0)
        var = sum((v - mean) ** 2 for v in values) / (n - 1)
        return cls(n=n, mean=mean, stderr=math.sqrt(var / n))

    def fmt(self, digits: int = 3, scale: float = 1.0) -> str:
        return f"{self.mean * scale:.{digits}f} ± {self.stderr * scale:.{digits}f}"


class TaskTypeStats(_Model):
    episodes: int
    success: Stat
    score: Stat


class EpisodeResult(_Model):
    """One episode (one JSON file; the BALROG layout): enough to recompute every row figure."""

    index: int
    seed: int
    split: str
    task_index: int
    task: str
    task_type: str | None = None
    won: bool
    score: float
    total_reward: float
    steps: int
    truncated: bool
    truncated_reason: str | None = None
    parse_counts: dict[str, int] = Field(default_factory=dict)
    episode_key: str = Field(description="Provenance.episode_key() of the run that wrote it")
    elapsed_s: float = 0.0
    turns: list[TurnRecord] = Field(default_factory=list)

    @classmethod
    def from_episode(cls, e: EpisodeRecord, *, index: int, episode_key: str, elapsed_s: float) -> "EpisodeResult":
        """The leaderboard's file for one episode-runner record (its turns kept as they are)."""
        counts: dict[str, int] = {}
        for t in e.turns:
            counts[t.parse_status.value] = counts.get(t.parse_status.value, 0) + 1
        task_type = next((t.info_extra["task_type"] for t in reversed(e.turns) if "task_type" in t.info_extra), None)
        last = e.turns[-1] if e.turns else None
        return cls(
            index=index, seed=e.seed if e.seed is not None else index, split=e.split or "", task_index=e.task_index or 0,
            task=e.task, task_type=None if task_type is None else str(task_type), won=e.won, score=e.score,
            total_reward=e.total_reward, steps=e.length, truncated=bool(last and last.truncated),
            truncated_reason=e.truncated_reason, parse_counts=counts, episode_key=episode_key, elapsed_s=elapsed_s,
            turns=e.turns,
        )


class EpisodeSummary(_Model):
    """What a row's figures are computed from, per episode (the episode file minus its turns)."""

    index: int
    won: bool
    score: float
    total_reward: float
    steps: int
    task_type: str | None = None
    parse_counts: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def of(cls, e: "EpisodeResult") -> "EpisodeSummary":
        return cls(index=e.index, won=e.won, score=e.score, total_reward=e.total_reward, steps=e.steps,
                   task_type=e.task_type, parse_counts=dict(e.parse_counts))


def digest_records(records: Sequence[EpisodeSummary]) -> str:
    """sha256 (hex) of the canonical JSON of the records, one per line, in index order."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.index):
        h.update(json.dumps(r.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


class RowInconsistentError(ArlArenaError, ValueError):
    """A result row contradicts itself or its folder (edited figures, wrong episode count,
    duplicate policy, another env's row): re-run `arlarena leaderboard evaluate` for it."""


class LeaderboardRow(_Model):
    """One (env, policy) result: mean ± standard error over the protocol's episodes."""

    env_id: str
    policy: str
    policy_kind: str
    episodes: int
    success: Stat
    score: Stat
    reward: Stat
    steps: Stat
    parse_rates: dict[str, float] = Field(description="fraction of all turns per parse status")
    per_task_type: dict[str, TaskTypeStats] = Field(default_factory=dict)
    stability_score: float | None = Field(None, description="from `arlarena stability` for trained agents")
    stability_run: str | None = None
    pass_at_k: dict[int, float] = Field(
        default_factory=dict, description="sampling policies with n samples per task: k -> unbiased pass@k (passk.pass_at_k_table)"
    )
    provenance: Provenance
    records: list[EpisodeSummary] = Field(default_factory=list, description="per-episode figures the row is computed from")
    records_digest: str = Field("", description="digest_records(records): render recomputes it and the figures")

    def result_dump(self) -> dict[str, Any]:
        """The row without when and from which checkout it was evaluated (`provenance.evaluated_at`,
        `eval_code_commit`, which turns '+dirty' while files are edited): equal for two evaluations
        of the same policy under the same protocol."""
        return self.model_dump(mode="json", exclude={"provenance": {"evaluated_at", "eval_code_commit"}})
