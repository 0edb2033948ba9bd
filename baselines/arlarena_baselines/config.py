"""The training configuration: one pydantic model (`TrainConfig`) with a section per concern.

YAML files in `arlarena_baselines/configs/` are presets (sampo.yaml, grpo.yaml, ...); a file
may start with `extends: <other>.yaml` and override only what changes. `load_config(path,
overrides)` resolves `extends`, applies `key.sub=value` overrides and validates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from arlarena_envs.contract import SamplingParams
from arlarena_envs.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TinyModelConfig(_Section):
    """Build a small Qwen2 model and a local BPE tokenizer instead of loading `path`."""

    hidden_size: int = Field(64, ge=8, description="hidden width of the tiny Qwen2 model")
    num_layers: int = Field(2, ge=1, description="number of transformer layers")
    num_heads: int = Field(4, ge=1, description="attention heads (hidden_size must divide by it)")
    vocab_size: int = Field(1024, ge=300, description="BPE vocabulary size trained on env text")
    tokenizer_episodes: int = Field(20, ge=1, description="oracle episodes whose text trains the tokenizer")


class ModelConfig(_Section):
    """The policy: any local causal LM directory, or a tiny model built from `tiny`."""

    path: str | None = Field(None, description="local causal LM directory (config, weights, tokenizer with chat template)")
    tiny: TinyModelConfig | None = Field(None, description="build a tiny model + tokenizer locally (tests, CPU demo)")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="parameter dtype")
    seed: int = Field(0, description="initialisation seed of the tiny model")

    @model_validator(mode="after")
    def _one_source(self) -> "ModelConfig":
        if (self.path is None) == (self.tiny is None):
            raise ValueError("set exactly one of model.path (a local model directory) or model.tiny")
        return self


class EnvConfig(_Section):
    """Which env, which pool backend, and protocol overrides."""

    env_id: str = Field("arlarena/Sokoban-v0", description="registered env id")
    backend: str = Field("inprocess", description="pool backend: inprocess, subprocess, remote, docker, ray")
    backend_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra kwargs for make_pool")
    max_steps: int | None = Field(None, ge=1, description="override the protocol's max_steps (episode horizon)")
    action_format: Literal["auto", "tagged", "bare"] = Field(
        "tagged", description="how responses are parsed; the trainer uses tagged (<think>/<action> required)"
    )
    env_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra env kwargs (e.g. dim_room)")
    train_split: str = Field("train", description="split the training task seeds come from")
    eval_split: str = Field("eval", description="split of the fixed evaluation seeds")
    seed: int = Field(0, description="seed of the training task sampler")


class RolloutConfig(_Section):
    """Rollout engine and batch shape."""

    engine: Literal["hf", "vllm"] = Field("hf", description="hf: transformers generate (CPU/GPU); vllm: GPU, extra `gpu`")
    num_groups: int = Field(16, ge=1, description="tasks (groups) per RL step (train_batch_size)")
    group_size: int = Field(8, ge=1, description="G: trajectories per task seed (env.rollout.n)")
    max_prompt_tokens: int = Field(2048, ge=16, description="longer prompts raise ConfigError")
    sampling: SamplingParams = Field(
        default_factory=lambda: SamplingParams(temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=512),
        description="training sampling (paper: T=1, top_p=1)",
    )
    eval_sampling: SamplingParams = Field(
        default_factory=SamplingParams,
        description="evaluation sampling (paper: T=0.6, top_p=0.95, top_k=20)",
    )
    gpu_memory_utilization: float = Field(0.4, gt=0, le=1, description="vLLM only")


class FilterConfig(_Section):
    """Dynamic filtering of zero-variance groups (ARL-Arena DAPO semantics)."""

    enable: bool = Field(False, description="drop groups whose episode rewards are all identical")
    max_num_gen_batches: int = Field(3, ge=1, description="generation tries per step; the last try fills with uniform groups")
    cold_start_steps: int = Field(0, ge=0, description="filter only once step > cold_start_steps")
    fill_uniform: bool = Field(
        True, description="last try pads the batch with uniform groups (ARL-Arena); False trains on the non-uniform groups only"
    )


class AlgorithmConfig(_Section):
    """Advantage estimator, policy loss, regularisers (the paper's design dimensions)."""

    name: str = Field("custom", description="preset name, for logs (sampo, grpo, ...)")
    adv_estimator: Literal["grpo", "drgrpo", "vanilla_grpo", "gigpo", "empg"] = Field("grpo", description="advantage estimator")
    loss_mode: Literal["vanilla", "drgrpo", "gspo", "sapo", "cispo"] = Field("vanilla", description="policy loss")
    loss_agg_mode: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"] = Field(
        "token-mean", description="aggregation of the pg loss (GSPO always uses seq-mean-token-mean), KL and entropy terms"
    )
    clip_ratio: float = Field(0.2, gt=0, description="default ε for both sides")
    clip_ratio_low: float | None = Field(None, gt=0, le=1.0, description="ε_low (1.0 = no lower clip, CISPO)")
    clip_ratio_high: float | None = Field(None, gt=0, description="ε_high (> ε_low = clip-higher)")
    clip_ratio_c: float = Field(3.0, gt=1.0, description="dual-clip constant c for A<0 (vanilla/drgrpo)")
    use_seq_mask: bool = Field(False, description="ARL-Arena sequence mask (vanilla, sapo, cispo)")
    seq_mask_delta: float = Field(0.223, description="δ of the sequence mask")
    tau_pos: float = Field(1.0, gt=0, description="SAPO gate temperature for A>0")
    tau_neg: float = Field(1.05, gt=0, description="SAPO gate temperature for A<=0")
    max_response_len_per_turn: int = Field(
        500, ge=1, description="Dr.GRPO loss divisor (in a TrainConfig, unless set: rollout.sampling.max_new_tokens, as the "
                               "reference trainer sets it to data.max_response_length)")
    epsilon: float = Field(1e-6, gt=0, description="ε added to group std")
    gamma: float = Field(0.95, ge=0, le=1, description="GiGPO discount of step returns")
    step_advantage_w: float = Field(1.0, description="GiGPO ω (weight of the step advantage)")
    gigpo_mode: Literal["mean_norm", "mean_std_norm"] = Field("mean_norm", description="GiGPO normalisation")
    empg_k: float = Field(1.0, description="EMPG k (self-calibrating scale)")
    empg_k_f: float = Field(1.0, description="EMPG k_f (future clarity)")
    empg_zeta: float = Field(0.05, description="EMPG ζ")
    use_kl_loss: bool = Field(True, description="k-estimator KL to the frozen reference as a loss term")
    kl_loss_coef: float = Field(0.01, ge=0, description="β")
    kl_loss_type: Literal["kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3"] = Field("low_var_kl", description="KL estimator")
    entropy_coeff: float = Field(0.001, description="entropy bonus c_H")
    use_invalid_action_penalty: bool = Field(True, description="row score −= coef at invalid turns")
    invalid_action_penalty_coef: float = Field(0.1, ge=0, description="invalid-action penalty")
    filter_groups: FilterConfig = Field(default_factory=FilterConfig, description="dynamic filtering")

    @model_validator(mode="after")
    def _combos(self) -> "AlgorithmConfig":
        if self.use_seq_mask and self.loss_mode not in ("vanilla", "sapo", "cispo"):
            raise ValueError(f"use_seq_mask applies to vanilla, sapo and cispo only, not {self.loss_mode}")
        if self.loss_mode == "drgrpo" and self.adv_estimator != "drgrpo":
            raise ValueError("loss_mode drgrpo needs adv_estimator drgrpo (advantages without std)")
        if self.loss_mode == "drgrpo":
            # Dr.GRPO's constant normaliser: sum over tokens, mean over rows, / max_response_len_per_turn
            # (the reference trainer forces this aggregation for its drgrpo algorithm)
            if "loss_agg_mode" in self.model_fields_set and self.loss_agg_mode != "seq-mean-token-sum":
                raise ValueError(f"loss_mode drgrpo aggregates with seq-mean-token-sum (as the reference trainer forces), not {self.loss_agg_mode}")
            self.loss_agg_mode = "seq-mean-token-sum"
        if self.loss_mode in ("vanilla", "drgrpo", "gspo"):
            lo = self.clip_ratio_low if self.clip_ratio_low is not None else self.clip_ratio
            if lo >= 1.0:
                raise ValueError(f"{self.loss_mode}: clip_ratio_low must be < 1 (only CISPO allows 1.0)")
        return self


class BCConfig(_Section):
    """Behaviour-cloning cold start on oracle trajectories."""

    enable: bool = Field(True, description="run SFT on expert trajectories before RL")
    episodes: int = Field(200, ge=1, description="oracle episodes (train split seeds) to imitate")
    epochs: int = Field(3, ge=1, description="passes over the BC data")
    max_updates: int | None = Field(None, ge=1, description="stop after this many updates (mid-epoch); None: all epochs")
    batch_size: int = Field(32, ge=1, description="samples per BC update")
    lr: float = Field(1e-3, gt=0, description="BC learning rate (the peak one under a schedule)")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant lr, or linear warmup then cosine decay to min_lr_ratio·lr at the last update"
    )
    warmup_updates: int = Field(0, ge=0, description="cosine: updates of linear warmup from lr/warmup_updates to lr")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine: the final lr as a fraction of lr")
    loss_agg_mode: Literal["token-mean", "seq-mean-token-sum"] = Field(
        "token-mean", description="SFT loss: mean over response tokens, or per-response token sum averaged over responses"
    )
    think: str = Field("{action}", description="think text of the target; {action} is replaced by the action")
    seed_offset: int = Field(500_000, ge=0, description="BC episodes use train seeds offset+i (disjoint from RL seeds)")


class TrainerConfig(_Section):
    """Optimisation, logging, checkpoints."""

    total_steps: int = Field(200, ge=0, description="RL steps")
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate (constant)")
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0, description="max global grad norm")
    ppo_mini_batch_size: int = Field(256, ge=1, description="step-samples per optimizer step")
    ppo_micro_batch_size: int = Field(32, ge=1, description="step-samples per forward (grad accumulation)")
    ppo_epochs: int = Field(1, ge=1)
    shuffle_minibatches: bool = Field(True, description="split each epoch's rows into mini-batches in a seeded random order (False: batch order)")
    eval_every: int = Field(5, ge=0, description="evaluate every N RL steps (0: only at the end)")
    eval_episodes: int = Field(128, ge=1, description="fixed eval seeds: the eval split's first N")
    eval_at_start: bool = Field(True, description="evaluate the initial (post-BC) policy as step 0")
    save_every: int = Field(10, ge=0, description="checkpoint every N steps (0: only at the end)")
    keep_checkpoints: int = Field(3, ge=1, description="checkpoints kept on disk")
    output_dir: str = Field("runs", description="runs are written to output_dir/run_name")
    run_name: str | None = Field(None, description="default: <algorithm>-<env>-s<seed>")
    resume: bool = Field(True, description="resume from the latest checkpoint of the run dir")
    seed: int = Field(0, description="torch/sampling seed")
    num_threads: int | None = Field(None, ge=1, description="torch.set_num_threads (None: leave); fix it for runs that must reproduce")
    deterministic: bool = Field(True, description="torch.use_deterministic_algorithms (warn-only) and every RNG seeded from `seed`")
    device: str = Field("auto", description="auto, cpu, cuda")
    tensorboard: bool = Field(False, description="also write TensorBoard scalars (extra `tensorboard`)")
    progress: bool = Field(True, description="tqdm progress bars")


class MonitorSettings(_Section):
    """Online stability monitor (arlarena_envs.stability.monitor; see arlarena_baselines.monitoring)."""

    enable: bool = Field(True, description="show every RL row to the monitor and carry out its decision")
    module: str = Field("arlarena_envs.stability.monitor", description="module holding StabilityMonitor / MonitorConfig (a custom monitor returns the same MonitorDecision)")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="kwargs of MonitorConfig, e.g. {actions: {collapse: rollback, grad_norm_nonfinite: stop}}",
    )
    tighten_factor: float = Field(0.5, gt=0, lt=1, description="'tighten' scales clip ε and LR by this when the monitor gives no scale")


class TrainConfig(_Section):
    """One training run: BC cold start, then RL with the chosen algorithm."""

    model: ModelConfig
    env: EnvConfig = Field(default_factory=EnvConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    bc: BCConfig = Field(default_factory=BCConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)

    @model_validator(mode="after")
    def _combos(self) -> "TrainConfig":
        if self.algorithm.filter_groups.enable and self.rollout.group_size < 2:
            raise ValueError("filter_groups needs group_size >= 2 (a single trajectory is always uniform)")
        if self.algorithm.adv_estimator in ("grpo", "drgrpo", "vanilla_grpo", "gigpo", "empg") and self.rollout.group_size < 2:
            raise ValueError(f"{self.algorithm.adv_estimator} normalises within groups: set rollout.group_size >= 2")
        if self.trainer.ppo_micro_batch_size > self.trainer.ppo_mini_batch_size:
            raise ValueError("ppo_micro_batch_size must be <= ppo_mini_batch_size")
        if self.model.tiny is not None and self.model.tiny.hidden_size % self.model.tiny.num_heads:
            raise ValueError("model.tiny.hidden_size must be divisible by num_heads")
        if "max_response_len_per_turn" not in self.algorithm.model_fields_set:
            self.algorithm.max_response_len_per_turn = self.rollout.sampling.max_new_tokens
        return self


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve_config_path(path: str | Path) -> Path:
    """A path as given, else a file of the shipped presets (`sampo`, `sampo.yaml`)."""
    p = Path(path)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / p.name, CONFIG_DIR / f"{p.name}.yaml"):
        if cand.is_file():
            return cand
    presets = sorted(f.stem for f in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {path} not found; give a YAML path or one of the presets {presets}")


def load_raw(path: str | Path, _depth: int = 0) -> dict:
    """The YAML mapping with `extends:` resolved (relative to the file, then the presets)."""
    if _depth > 8:
        raise ConfigError("config `extends` chain is too deep (cycle?)")
    p = resolve_config_path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"cannot parse {p}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a YAML mapping")
    parent = data.pop("extends", None)
    if parent:
        cand = p.parent / parent
        base = load_raw(cand if cand.is_file() else parent, _depth + 1)
        data = _deep_merge(base, data)
    return data


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a nested mapping."""
    data = dict(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def validate_config(data: dict) -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid training config:\n{e}") from e


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Load, resolve `extends`, apply overrides, validate."""
    return validate_config(apply_overrides(load_raw(path), overrides))


def preset_names() -> list[str]:
    return sorted(f.stem for f in CONFIG_DIR.glob("*.yaml"))
