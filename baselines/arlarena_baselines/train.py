"""The trainer: behaviour-cloning cold start, then multi-turn RL (SAMPO or a variant).

    from arlarena_baselines.train import run
    result = run("demo_cpu")            # a preset name, a YAML path, a dict or a TrainConfig
    result.final_eval_success, result.run_dir / "metrics.jsonl"

`Trainer.fit` reads top to bottom: `_prepare` (the policy: built, behaviour-cloned and frozen
as the reference on a fresh run, or resumed from the last checkpoint), then per RL step:
`gather_batch` (the episode runner plays `num_groups` x G episodes; dynamic filtering may
re-roll up to `max_num_gen_batches` times), `TurnBatch.from_episodes`, `update.ppo_update`
(advantages from the estimator table, the loss from the loss table), one typed MetricRecord
line in metrics.jsonl, and the stability monitor's decision (stop / rollback / tighten).
"""

from __future__ import annotations

import copy
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import torch

from arlarena_envs.contract import EpisodeRecord, MetricRecord
from arlarena_envs.errors import ConfigError
from arlarena_envs.leaderboard.trained import git_commit
from arlarena_envs.pools import EnvPool, make_pool

from arlarena_baselines import checkpoint as ckpt
from arlarena_baselines.batch import TurnBatch
from arlarena_baselines.bc import behaviour_clone, collect_oracle_examples, encode_examples
from arlarena_baselines.config import TrainConfig, apply_overrides, load_config, validate_config
from arlarena_baselines.filtering import filter_active, is_uniform, select_groups
from arlarena_baselines.monitoring import judge, make_monitor
from arlarena_baselines.rollout import HFEngine, RolloutEngine, VLLMEngine, collect_rollouts
from arlarena_baselines.tiny import build_tiny_model, load_tokenizer, save_policy, train_tokenizer
from arlarena_baselines.update import ppo_update


@dataclass
class RunResult:
    """What `run` returns."""

    run_dir: Path
    final_eval_success: float | None
    final_eval_score: float | None
    bc_eval_success: float | None = None
    steps_done: int = 0
    wall_time_s: float = 0.0
    stopped_reason: str = "completed"
    metrics_path: Path | None = None
    monitor_actions: list[dict] = field(default_factory=list)


def seed_everything(seed: int, num_threads: int | None, deterministic: bool) -> None:
    """Make a run a function of its config: seed Python's, NumPy's global and torch's RNGs
    (HF `generate` samples from torch's), fix torch's intra-op thread count (a float sum split
    over a different number of threads rounds differently) and ask torch for deterministic
    kernels. `warn_only`: on CUDA a few kernels have no deterministic version; they warn
    instead of stopping the run (CPU kernels are deterministic)."""
    import os
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if num_threads:
        torch.set_num_threads(num_threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def _as_config(config: TrainConfig | dict | str | Path, overrides: list[str] | None) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return validate_config(apply_overrides(config.model_dump(), overrides)) if overrides else config
    if isinstance(config, dict):
        return validate_config(apply_overrides(config, overrides))
    return load_config(config, overrides)


def run(config: TrainConfig | dict | str | Path, overrides: list[str] | None = None, run_dir: str | Path | None = None) -> RunResult:
    """Train from a config (TrainConfig, dict, YAML path or preset name); returns a RunResult."""
    return Trainer(_as_config(config, overrides), run_dir=run_dir).fit()


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None):
        self.cfg = cfg
        name = cfg.trainer.run_name or f"{cfg.algorithm.name}-{cfg.env.env_id.split('/')[-1]}-s{cfg.trainer.seed}"
        self.run_dir = Path(run_dir) if run_dir is not None else Path(cfg.trainer.output_dir) / name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        (self.run_dir / "config.json").write_text(cfg.model_dump_json(indent=2))
        self._record_launch()
        dev = cfg.trainer.device
        self.device = torch.device("cuda" if dev == "auto" and torch.cuda.is_available() else ("cpu" if dev == "auto" else dev))
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.model.dtype]
        seed_everything(cfg.trainer.seed, cfg.trainer.num_threads, cfg.trainer.deterministic)
        self.rng = np.random.default_rng([cfg.env.seed, cfg.trainer.seed])
        self.env_kwargs = {**cfg.env.env_kwargs, "action_format": cfg.env.env_kwargs.get("action_format", cfg.env.action_format)}
        if cfg.env.max_steps is not None:
            self.env_kwargs["max_steps"] = cfg.env.max_steps
        self.t0 = time.time()
        self.clip_scale = 1.0  # the monitor's 'tighten' multiplies it
        self.group_counter = 0  # group ids stay unique across steps
        self.monitor = make_monitor(cfg.monitor.module, cfg.monitor.config, self.run_dir / "monitor.jsonl") if cfg.monitor.enable else None
        self.monitor_actions: list[dict] = []
        self.rollbacks = 0
        self.tb: Any = None
        self.pools: list[EnvPool] = []
        # built by _prepare
        self.model: Any = None
        self.tok: Any = None
        self.ref: Any = None
        self.opt: torch.optim.Optimizer | None = None
        self.engine: RolloutEngine | None = None
        self.pool: EnvPool | None = None
        self.eval_pool: EnvPool | None = None

    # ------------------------------------------------------------------ the loop

    def _record_launch(self) -> None:
        """`provenance.json`: the code commit and command of the run's first launch (kept on
        resume), so a leaderboard row of its checkpoints names the code that trained them."""
        path = self.run_dir / "provenance.json"
        if path.exists():
            return
        record = {"code_commit": git_commit(Path(__file__).resolve().parent), "command": shlex.join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        path.write_text(json.dumps(record, indent=2))

    def fit(self) -> RunResult:
        cfg = self.cfg
        start, resumed, bc_eval, bc_score = self._prepare()
        self.pool = self._pool(cfg.rollout.num_groups * cfg.rollout.group_size, split=cfg.env.train_split)
        stopped, step = "completed", start
        bar = self._bar(cfg.trainer.total_steps - start, cfg.algorithm.name)
        try:
            for step in range(start + 1, cfg.trainer.total_steps + 1):
                kept, everything, filter_stats = self.gather_batch(step)
                batch = TurnBatch.from_episodes(kept)
                stats = ppo_update(self.model, self.ref, self._opt(), batch, cfg.algorithm, cfg.trainer, self.clip_scale,
                                   self.tok.pad_token_id, self.device, step=step, temperature=cfg.rollout.sampling.temperature)
                self._engine().sync_weights(self.model)
                rec = MetricRecord(
                    step=step, phase="rl",
                    success=float(np.mean([e.won for e in everything])),
                    score=float(np.mean([e.total_reward for e in everything])),
                    valid_format_ratio=float(np.mean([t.format_valid for t in batch.turns])),
                    valid_action_ratio=float(np.mean([t.valid_action for t in batch.turns])),
                    response_length=float(np.mean([len(t.response_ids or []) for t in batch.turns])),
                    lr=self._opt().param_groups[0]["lr"], num_samples=len(batch), **filter_stats, **stats.metrics(),
                )
                if cfg.trainer.eval_every and step % cfg.trainer.eval_every == 0 and step != cfg.trainer.total_steps:
                    rec.eval_success, rec.eval_score = self.evaluate()
                action, reason = self._apply_monitor(step, rec)
                self._log(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(success=f"{rec.success:.2f}", loss=f"{rec.loss:.3f}" if rec.loss is not None else "-")
                if action == "stop":
                    stopped = f"monitor stop at step {step}: {reason}"
                    break
                if cfg.trainer.save_every and step % cfg.trainer.save_every == 0:
                    self.save_checkpoint(step)
        finally:
            if bar is not None:
                bar.close()
        if cfg.trainer.total_steps > start or not resumed:
            self.save_checkpoint(step)
        if step == 0 and bc_eval is not None:  # no RL step ran: the step-0 evaluation is final
            final_eval, final_score = bc_eval, bc_score
        else:
            final_eval, final_score = self.evaluate()
            self._log(MetricRecord(step=step, phase="eval", eval_success=final_eval, eval_score=final_score))
        return self._finish(step, stopped, final_eval, final_score, bc_eval)

    # ------------------------------------------------------------------ the parts, in loop order

    def _prepare(self) -> tuple[int, bool, float | None, float | None]:
        """Policy, reference, optimizer and engine. A fresh run builds the policy, clones the
        oracle (BC), saves it as the reference and checkpoint 0 (and evaluates it when asked);
        a resumed run loads the reference and the last checkpoint. Returns (start step,
        resumed, step-0 eval success, step-0 eval score)."""
        cfg = self.cfg
        if cfg.trainer.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ConfigError("trainer.tensorboard needs the tensorboard extra: pip install 'arlarena-envs[tensorboard]'") from e
            self.tb = SummaryWriter(str(self.run_dir / "tb"))
        ckpts = ckpt.list_checkpoints(self.run_dir) if cfg.trainer.resume else []
        ref_dir = self.run_dir / "ref_policy"
        resumed = bool(ckpts) and ref_dir.exists()
        if resumed:
            self.model, self.tok = self._load_policy(ref_dir)
        else:
            self.metrics_path.unlink(missing_ok=True)
            self.model, self.tok = self._build_initial_policy()
            if cfg.bc.enable:
                self.behaviour_cloning()
            save_policy(self.model, self.tok, ref_dir)
        if cfg.algorithm.use_kl_loss:
            self.ref = copy.deepcopy(self.model).eval()
            for p in self.ref.parameters():
                p.requires_grad_(False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.trainer.lr, weight_decay=cfg.trainer.weight_decay)
        if cfg.rollout.engine == "vllm":
            self.engine = VLLMEngine(str(ref_dir), self.tok, cfg.rollout.max_prompt_tokens, cfg.rollout.gpu_memory_utilization, cfg.trainer.seed)
        else:
            self.engine = HFEngine(self.model, self.tok, cfg.rollout.max_prompt_tokens)
        if ckpts:
            start = self.load_checkpoint(ckpts[-1][1], restore_monitor=True)
            self._truncate_log(start)
            self.engine.sync_weights(self.model)
            return start, True, None, None
        self.save_checkpoint(0)
        if cfg.trainer.eval_at_start or cfg.trainer.total_steps == 0:
            bc_eval, bc_score = self.evaluate()
            self._log(MetricRecord(step=0, phase="eval", eval_success=bc_eval, eval_score=bc_score))
            return 0, False, bc_eval, bc_score
        return 0, False, None, None

    def behaviour_cloning(self) -> None:
        cfg = self.cfg.bc
        pool = self._pool(min(16, cfg.episodes))
        examples = collect_oracle_examples(pool, [cfg.seed_offset + i for i in range(cfg.episodes)], cfg.think)
        encoded = encode_examples(self.tok, examples, self.cfg.rollout.max_prompt_tokens)
        n_updates = cfg.epochs * -(-len(encoded) // cfg.batch_size)
        bar = self._bar(min(n_updates, cfg.max_updates or n_updates), "bc")
        behaviour_clone(self.model, encoded, cfg, self.rng, self.tok.pad_token_id, self.device, self.cfg.trainer.grad_clip, self._log, bar)
        if bar is not None:
            bar.close()
        pool.close()

    def gather_batch(self, step: int) -> tuple[list[EpisodeRecord], list[EpisodeRecord], dict[str, float]]:
        """(kept episodes, all generated ones, filter stats) for one RL step."""
        cfg, fcfg = self.cfg, self.cfg.algorithm.filter_groups
        G, B = cfg.rollout.group_size, cfg.rollout.num_groups
        active = filter_active(step, fcfg.enable, fcfg.cold_start_steps, True)
        kept: list[list[EpisodeRecord]] = []
        everything: list[EpisodeRecord] = []
        filtered = informative = tries = 0
        while True:
            tries += 1
            seeds = self.rng.integers(0, cfg.bc.seed_offset, size=B).tolist()
            episodes = collect_rollouts(self._train_pool(), self._engine(), seeds, G, cfg.rollout.sampling, group_offset=self.group_counter)
            self.group_counter += B
            everything += episodes
            groups = [episodes[g * G : (g + 1) * G] for g in range(B)]
            rewards = [[e.native_reward for e in grp] for grp in groups]
            informative += sum(not is_uniform(r) for r in rewards)
            if not active:
                kept = groups
                break
            last = tries >= fcfg.max_num_gen_batches
            keep = select_groups(rewards, B - len(kept), last, fcfg.fill_uniform, len(kept))
            filtered += sum(1 for i, grp in enumerate(groups) if i not in keep and len({e.native_reward for e in grp}) == 1)
            kept += [groups[i] for i in keep]
            if len(kept) >= B or last:
                break
        # informative_groups: non-uniform groups among all rolled; when it stays below num_groups
        # the last try fills the batch with uniform groups (filtering cannot find enough signal)
        stats = {"filtered_groups": float(filtered), "kept_groups": float(len(kept)), "gen_batches": float(tries),
                 "informative_groups": float(informative)}
        return [e for grp in kept for e in grp], everything, stats

    def _apply_monitor(self, step: int, rec: MetricRecord) -> tuple[str, str]:
        """Show `rec` to the stability monitor and carry out its decision (rollback to the last
        healthy checkpoint, at most 3 times; tighten the clip range and lr; stop). Writes the
        decision into `rec`; returns (the action taken, the monitor's reason)."""
        if self.monitor is None:
            return "none", ""
        decision = judge(self.monitor, rec)
        if decision.action != "none" or decision.alarms:
            rec.monitor_action = decision.action
            rec.monitor_reason = decision.reason
            rec.monitor_alarms = [a.model_dump(mode="json") for a in decision.alarms]
        action = decision.action
        if action == "rollback":
            target = ckpt.rollback_target(self.run_dir, step, self._last_healthy_step())
            self.rollbacks += 1
            if target is None or self.rollbacks > 3:
                action = rec.monitor_action = "stop"
                rec.monitor_reason = f"{decision.reason}; rollback impossible or repeated, stopping"
            else:
                rec.rollback_to = self.load_checkpoint(target)
                self._engine().sync_weights(self.model)
        elif action == "tighten":
            self.clip_scale *= decision.clip_scale or self.cfg.monitor.tighten_factor
            for g in self._opt().param_groups:
                g["lr"] *= decision.lr_scale or self.cfg.monitor.tighten_factor
            rec.clip_scale = self.clip_scale
        if action != "none":
            self.monitor_actions.append({"step": step, "action": action, "reason": decision.reason})
        return action, decision.reason

    def evaluate(self) -> tuple[float, float]:
        """(success rate, mean episode reward) on the first `eval_episodes` tasks of the eval split."""
        n = self.cfg.trainer.eval_episodes
        if self.eval_pool is None:
            self.eval_pool = self._pool(n, split=self.cfg.env.eval_split)
        episodes = collect_rollouts(self.eval_pool, self._engine(), list(range(n)), 1, self.cfg.rollout.eval_sampling)
        return float(np.mean([e.won for e in episodes])), float(np.mean([e.total_reward for e in episodes]))

    def _finish(self, step: int, stopped: str, final_eval: float | None, final_score: float | None, bc_eval: float | None) -> RunResult:
        for p in self.pools:
            p.close()
        if self.tb is not None:
            self.tb.close()
        result = RunResult(
            run_dir=self.run_dir, final_eval_success=final_eval, final_eval_score=final_score, bc_eval_success=bc_eval,
            steps_done=step, wall_time_s=time.time() - self.t0, stopped_reason=stopped, metrics_path=self.metrics_path,
            monitor_actions=self.monitor_actions,
        )
        (self.run_dir / "result.json").write_text(json.dumps({
            "final_eval_success": final_eval, "final_eval_score": final_score, "bc_eval_success": bc_eval,
            "steps_done": step, "wall_time_s": result.wall_time_s, "stopped_reason": stopped,
            "monitor_actions": self.monitor_actions,
        }, indent=2))
        return result

    # ------------------------------------------------------------------ checkpoints

    def _last_healthy_step(self) -> int | None:
        return self.monitor.last_healthy_step if self.monitor is not None else None

    def save_checkpoint(self, step: int) -> Path:
        opt = self._opt()
        state = {"clip_scale": self.clip_scale, "lr": opt.param_groups[0]["lr"], "group_counter": self.group_counter,
                 "np_rng": self.rng.bit_generator.state,
                 "monitor": self.monitor.state_dict() if self.monitor is not None else None}
        path = ckpt.save_checkpoint(self.run_dir, step, self.model, self.tok, opt, state)
        ckpt.prune_checkpoints(self.run_dir, self.cfg.trainer.keep_checkpoints, self._last_healthy_step())
        return path

    def load_checkpoint(self, path: Path, restore_monitor: bool = False) -> int:
        """Restore weights, optimizer, RNGs and schedules; the monitor's history only on resume
        (after a rollback it keeps what it saw, so the drop that caused it stays on record)."""
        opt = self._opt()
        state = ckpt.load_checkpoint(path, self.model, opt, self.device, self.dtype)
        self.clip_scale = float(state["clip_scale"])
        for g in opt.param_groups:
            g["lr"] = float(state["lr"])
        self.group_counter = int(state["group_counter"])
        self.rng.bit_generator.state = state["np_rng"]
        if restore_monitor and self.monitor is not None and state.get("monitor") is not None:
            self.monitor.load_state_dict(state["monitor"])
        return int(state["step"])

    # ------------------------------------------------------------------ helpers

    def _opt(self) -> torch.optim.Optimizer:
        if self.opt is None:
            raise ConfigError("the trainer has no optimizer yet: call fit()")
        return self.opt

    def _engine(self) -> RolloutEngine:
        if self.engine is None:
            raise ConfigError("the trainer has no rollout engine yet: call fit()")
        return self.engine

    def _train_pool(self) -> EnvPool:
        if self.pool is None:
            raise ConfigError("the trainer has no training pool yet: call fit()")
        return self.pool

    def _pool(self, n: int, split: str | None = None) -> EnvPool:
        kw = dict(self.env_kwargs) | ({"split": split} if split is not None else {})
        p = make_pool(self.cfg.env.env_id, n, backend=self.cfg.env.backend, env_kwargs=kw, **self.cfg.env.backend_kwargs)
        self.pools.append(p)
        return p

    def _load_policy(self, path: Path) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM

        if not path.is_dir():
            raise ConfigError(f"model.path {path} is not a directory; give a local causal LM (config, weights, tokenizer)")
        tok = load_tokenizer(path)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        if not getattr(tok, "chat_template", None):
            raise ConfigError(f"the tokenizer at {path} has no chat template; add one (tokenizer_config.json)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        return model.to(self.device), tok

    def _build_initial_policy(self) -> tuple[Any, Any]:
        """`model.path`, or a tiny model with a BPE tokenizer trained on oracle transcripts."""
        cfg = self.cfg
        if cfg.model.path is not None:
            return self._load_policy(Path(cfg.model.path))
        tiny = cfg.model.tiny
        if tiny is None:
            raise ConfigError("set model.path (a local causal LM) or model.tiny")
        pool = self._pool(min(8, tiny.tokenizer_episodes))
        examples = collect_oracle_examples(pool, [cfg.bc.seed_offset + i for i in range(tiny.tokenizer_episodes)], cfg.bc.think)
        corpus = [e.prompt for e in examples] + [e.response for e in examples] * 4
        tok = train_tokenizer(corpus, vocab_size=tiny.vocab_size)
        model = build_tiny_model(
            len(tok), tiny.hidden_size, tiny.num_layers, tiny.num_heads, seed=cfg.model.seed,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )
        save_policy(model, tok, self.run_dir / "init_policy")
        return model.to(self.device), tok

    def _bar(self, total: int, desc: str) -> Any:
        if not self.cfg.trainer.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, leave=False)

    def _log(self, rec: MetricRecord) -> None:
        rec.time_s = round(time.time() - self.t0, 3)
        row = rec.model_dump(exclude_none=True)
        with self.metrics_path.open("a", encoding="utf-8") as f:
            # json.dumps keeps NaN/inf as NaN/Infinity (pydantic's dump would write null, which
            # reads as "not measured"); Python's json and pydantic both parse them back
            f.write(json.dumps(row, allow_nan=True) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                    self.tb.add_scalar(f"{rec.phase}/{k}", v, rec.step)

    def _truncate_log(self, step: int) -> None:
        """On resume: drop rl/eval lines after the checkpoint's step (they will be redone)."""
        if not self.metrics_path.exists():
            return
        keep = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            if d.get("phase") in ("rl", "eval") and d.get("step", 0) > step:
                continue
            keep.append(line)
        self.metrics_path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")


__all__ = ["RunResult", "Trainer", "run"]
