"""The trainer: behaviour-cloning cold start, then multi-turn RL (SAMPO or a variant).

    from arlarena_baselines.train import run
    result = run("demo_cpu")            # a preset name, a YAML path, a dict or a TrainConfig
    result.final_eval_success, result.run_dir / "metrics.jsonl"

One RL step: roll out `num_groups` x G trajectories (dynamic filtering may re-roll up to
`max_num_gen_batches` times), score every turn (episode reward minus the invalid penalty),
compute advantages, recompute old/ref log-probs, then PPO-style mini-batch updates with
gradient clipping (non-finite steps are skipped). Each step writes one MetricRecord line to
metrics.jsonl and is shown to the stability monitor (stop / rollback / tighten).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arlarena_envs.contract import EpisodeRecord, MetricRecord
from arlarena_envs.errors import ArlArenaError, ConfigError
from arlarena_envs.pools import make_pool

from arlarena_baselines import checkpoint as ckpt
from arlarena_baselines import losses as loss_lib
from arlarena_baselines.batch import TurnBatch
from arlarena_baselines.bc import batches, collect_oracle_examples, encode_examples
from arlarena_baselines.config import TrainConfig, load_config, validate_config
from arlarena_baselines.estimators import compute_advantages
from arlarena_baselines.filtering import filter_active, select_groups
from arlarena_baselines.monitor_adapter import MonitorAdapter, alarms_json
from arlarena_baselines.rollout import HFEngine, VLLMEngine, collect_rollouts


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


def _as_config(config: TrainConfig | dict | str | Path, overrides: list[str] | None) -> TrainConfig:
    if isinstance(config, TrainConfig):
        if overrides:
            from arlarena_baselines.config import apply_overrides

            return validate_config(apply_overrides(config.model_dump(), overrides))
        return config
    if isinstance(config, dict):
        from arlarena_baselines.config import apply_overrides

        return validate_config(apply_overrides(config, overrides))
    return load_config(config, overrides)


def run(config: TrainConfig | dict | str | Path, overrides: list[str] | None = None, run_dir: str | Path | None = None) -> RunResult:
    """Train from a config (TrainConfig, dict, YAML path or preset name); returns a RunResult."""
    return Trainer(_as_config(config, overrides), run_dir=run_dir).fit()


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path | None = None):
        import torch

        self.cfg = cfg
        self.torch = torch
        a = cfg.algorithm
        name = cfg.trainer.run_name or f"{a.name}-{cfg.env.env_id.split('/')[-1]}-s{cfg.trainer.seed}"
        self.run_dir = Path(run_dir) if run_dir is not None else Path(cfg.trainer.output_dir) / name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        (self.run_dir / "config.json").write_text(cfg.model_dump_json(indent=2))
        if cfg.trainer.num_threads:
            torch.set_num_threads(cfg.trainer.num_threads)
        dev = cfg.trainer.device
        self.device = torch.device("cuda" if dev == "auto" and torch.cuda.is_available() else ("cpu" if dev == "auto" else dev))
        torch.manual_seed(cfg.trainer.seed)
        self.rng = np.random.default_rng([cfg.env.seed, cfg.trainer.seed])
        env_kw = dict(cfg.env.env_kwargs)
        env_kw.setdefault("action_format", cfg.env.action_format)
        if cfg.env.max_steps is not None:
            env_kw["max_steps"] = cfg.env.max_steps
        self.env_kwargs = env_kw
        self.t0 = time.time()
        self.clip_scale = 1.0
        self.group_counter = 0
        self.monitor = MonitorAdapter(cfg.monitor.enable, cfg.monitor.config, cfg.monitor.module, self.run_dir / "monitor.jsonl")
        self.monitor_actions: list[dict] = []
        self.tb = None
        self._pools: list[Any] = []

    # ------------------------------------------------------------------ setup helpers

    def _pool(self, n: int, split: str | None = None):
        kw = dict(self.env_kwargs)
        if split is not None:
            kw["split"] = split
        p = make_pool(self.cfg.env.env_id, n, backend=self.cfg.env.backend, env_kwargs=kw, **self.cfg.env.backend_kwargs)
        self._pools.append(p)
        return p

    def _dtype(self):
        return {"float32": self.torch.float32, "bfloat16": self.torch.bfloat16, "float16": self.torch.float16}[self.cfg.model.dtype]

    def _load_policy(self, path: Path):
        from transformers import AutoModelForCausalLM

        from arlarena_baselines.tiny import load_tokenizer

        if not path.is_dir():
            raise ConfigError(f"model.path {path} is not a directory; give a local causal LM (config, weights, tokenizer)")
        tok = load_tokenizer(path)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        if not getattr(tok, "chat_template", None):
            raise ConfigError(f"the tokenizer at {path} has no chat template; add one (tokenizer_config.json)")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self._dtype())
        return model.to(self.device), tok

    def _build_initial_policy(self):
        cfg = self.cfg
        if cfg.model.path is not None:
            return self._load_policy(Path(cfg.model.path))
        from arlarena_baselines.tiny import build_tiny_model, save_policy, train_tokenizer

        tiny = cfg.model.tiny
        assert tiny is not None
        pool = self._pool(min(8, tiny.tokenizer_episodes))
        seeds = [cfg.bc.seed_offset + i for i in range(tiny.tokenizer_episodes)]
        examples = collect_oracle_examples(pool, seeds, cfg.bc.think)
        corpus = [e.prompt for e in examples] + [e.response for e in examples] * 4
        tok = train_tokenizer(corpus, vocab_size=tiny.vocab_size)
        model = build_tiny_model(
            len(tok), tiny.hidden_size, tiny.num_layers, tiny.num_heads, seed=cfg.model.seed,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )
        save_policy(model, tok, self.run_dir / "init_policy")
        return model.to(self.device), tok

    # ------------------------------------------------------------------ logging

    def _log(self, rec: MetricRecord) -> None:
        rec.time_s = round(time.time() - self.t0, 3)
        with self.metrics_path.open("a", encoding="utf-8") as f:
            # json.dumps keeps NaN/inf as NaN/Infinity (pydantic's dump would write null, which
            # reads as "not measured"); Python's json and pydantic both parse them back
            f.write(json.dumps(rec.model_dump(exclude_none=True), allow_nan=True) + "\n")
        if self.tb is not None:
            for k, v in rec.model_dump(exclude_none=True).items():
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

    # ------------------------------------------------------------------ tensors

    def _forward(self, model, rows: list[tuple[list[int], list[int]]], T: int, need_entropy: bool):
        """Per-token log-probs (b, T) of each (prompt ids, response ids) row's response (and entropies) under `model`."""
        torch = self.torch
        pad = self.tok.pad_token_id
        seqs = [p + r for p, r in rows]
        L = max(len(s) for s in seqs)
        ids = torch.tensor([s + [pad] * (L - len(s)) for s in seqs], device=self.device)
        attn = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs], device=self.device)
        pos = torch.zeros(len(rows), T, dtype=torch.long)
        tgt = torch.zeros(len(rows), T, dtype=torch.long)
        for i, (p_ids, r_ids) in enumerate(rows):
            n = len(r_ids)
            if n:
                pos[i, :n] = torch.arange(len(p_ids) - 1, len(p_ids) - 1 + n)
                tgt[i, :n] = torch.tensor(r_ids)
        pos, tgt = pos.to(self.device), tgt.to(self.device)
        head = model.get_output_embeddings()
        base = getattr(model, model.base_model_prefix, None) if head is not None else None
        if base is not None:  # lm_head only on the response positions (cheaper than full logits)
            hidden = base(input_ids=ids, attention_mask=attn).last_hidden_state
            hsel = hidden.gather(1, pos.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
            sel = head(hsel).float()
        else:
            logits = model(input_ids=ids, attention_mask=attn).logits
            sel = logits.gather(1, pos.unsqueeze(-1).expand(-1, -1, logits.shape[-1])).float()
        logp = torch.log_softmax(sel, dim=-1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        ent = loss_lib.entropy_from_logits(sel) if need_entropy else None
        return logp, ent

    def _no_grad_pass(self, model, rows, T, need_entropy):
        torch = self.torch
        mb = self.cfg.trainer.ppo_micro_batch_size
        lps, ents = [], []
        was = model.training
        model.eval()
        with torch.no_grad():
            for s in range(0, len(rows), mb):
                lp, en = self._forward(model, rows[s : s + mb], T, need_entropy)
                lps.append(lp)
                if en is not None:
                    ents.append(en)
        model.train(was)
        return torch.cat(lps), (torch.cat(ents) if ents else None)

    # ------------------------------------------------------------------ BC

    def behaviour_cloning(self) -> None:
        torch = self.torch
        cfg = self.cfg.bc
        pool = self._pool(min(16, cfg.episodes))
        seeds = [cfg.seed_offset + i for i in range(cfg.episodes)]
        examples = collect_oracle_examples(pool, seeds, cfg.think)
        enc = encode_examples(self.tok, examples, self.cfg.rollout.max_prompt_tokens)
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.model.train()
        n_updates = cfg.epochs * math.ceil(len(enc) / cfg.batch_size)
        bar = self._bar(n_updates, "bc")
        step = 0
        for _epoch in range(cfg.epochs):
            for idx in batches(len(enc), cfg.batch_size, self.rng):
                rows = [enc[i] for i in idx]
                T = max(len(r) for _, r in rows)
                logp, _ = self._forward(self.model, rows, T, False)
                mask = torch.zeros_like(logp)
                for i, (_, r) in enumerate(rows):
                    mask[i, : len(r)] = 1
                if cfg.loss_agg_mode == "token-mean":
                    loss = -(logp * mask).sum() / mask.sum()
                else:  # seq-mean-token-sum: a short response's decisive token is not diluted
                    loss = -(logp * mask).sum() / len(rows)
                opt.zero_grad()
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.trainer.grad_clip)
                opt.step()
                step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                if step % 10 == 0 or step == n_updates:
                    self._log(MetricRecord(step=step, phase="bc", loss=float(loss.item()), grad_norm=float(gn), lr=cfg.lr))
        if bar is not None:
            bar.close()
        for p in self._pools[-1:]:
            p.close()

    def _bar(self, total: int, desc: str):
        if not self.cfg.trainer.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, leave=False)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> tuple[float, float]:
        n = self.cfg.trainer.eval_episodes
        if self.eval_pool is None:
            self.eval_pool = self._pool(n, split=self.cfg.env.eval_split)
        episodes = collect_rollouts(self.eval_pool, self.engine, list(range(n)), 1, self.cfg.rollout.eval_sampling)
        return float(np.mean([e.won for e in episodes])), float(np.mean([e.total_reward for e in episodes]))

    # ------------------------------------------------------------------ rollouts + filtering

    def gather_batch(self, step: int) -> tuple[list[EpisodeRecord], list[EpisodeRecord], dict[str, float]]:
        """(kept trajectories, all generated ones, filter stats) for one RL step."""
        cfg, fcfg = self.cfg, self.cfg.algorithm.filter_groups
        G, B = cfg.rollout.group_size, cfg.rollout.num_groups
        active = filter_active(step, fcfg.enable, fcfg.cold_start_steps, True)
        kept: list[list[EpisodeRecord]] = []
        everything: list[EpisodeRecord] = []
        filtered = 0
        tries = 0
        while True:
            tries += 1
            seeds = self.rng.integers(0, self.cfg.bc.seed_offset, size=B).tolist()
            trajs = collect_rollouts(self.pool, self.engine, seeds, G, cfg.rollout.sampling, group_offset=self.group_counter)
            self.group_counter += B
            everything += trajs
            groups = [trajs[g * G : (g + 1) * G] for g in range(B)]
            if not active:
                kept = groups
                break
            last = tries >= fcfg.max_num_gen_batches
            keep = select_groups([[t.native_reward for t in grp] for grp in groups], B - len(kept), last)
            filtered += sum(1 for i, grp in enumerate(groups) if i not in keep and len({t.native_reward for t in grp}) == 1)
            kept += [groups[i] for i in keep]
            if len(kept) >= B or last:
                break
        stats = {"filtered_groups": float(filtered), "kept_groups": float(len(kept)), "gen_batches": float(tries)}
        return [t for grp in kept for t in grp], everything, stats

    # ------------------------------------------------------------------ one RL update

    def _loss_kwargs(self) -> dict[str, Any]:
        """The policy loss's keyword arguments: the clip ranges (times the monitor's clip scale)
        and the algorithm settings its entry in `losses.LOSS_OPTIONS` names."""
        a, s = self.cfg.algorithm, self.clip_scale
        kw: dict[str, Any] = dict(
            loss_agg_mode=a.loss_agg_mode,
            clip_ratio=a.clip_ratio * s,
            clip_ratio_low=None if a.clip_ratio_low is None else a.clip_ratio_low * s,
            clip_ratio_high=None if a.clip_ratio_high is None else a.clip_ratio_high * s,
        )
        return kw | {k: getattr(a, k) for k in loss_lib.loss_options(a.loss_mode)}

    def update(self, batch: TurnBatch) -> dict[str, float]:
        torch = self.torch
        cfg, a = self.cfg, self.cfg.algorithm
        T, B = batch.width, len(batch)
        rows = batch.token_ids()
        mask = batch.mask.to(self.device)
        old_logp, old_ent = self._no_grad_pass(self.model, rows, T, True)
        ref_logp = self._no_grad_pass(self.ref, rows, T, False)[0] if self.ref is not None else None
        advs = compute_advantages(batch, old_ent.cpu(), a).to(self.device)
        loss_fn = loss_lib.get_policy_loss_fn(a.loss_mode)
        kw = self._loss_kwargs()
        mini = cfg.trainer.ppo_mini_batch_size
        n_mini = math.ceil(B / mini)
        on_policy = n_mini == 1 and cfg.trainer.ppo_epochs == 1
        acc: dict[str, list[float]] = {k: [] for k in ("loss", "pg_loss", "clipfrac_high", "clipfrac_low", "ppo_kl", "grad_norm", "kl_loss")}
        is_sum = is_cnt = 0.0
        is_min, is_max = math.inf, -math.inf
        neg_low = masked = 0.0
        skipped = False
        self.model.train()
        for _epoch in range(cfg.trainer.ppo_epochs):
            for m0 in range(0, B, mini):
                mb = list(range(m0, min(B, m0 + mini)))
                micro = [mb[s : s + cfg.trainer.ppo_micro_batch_size] for s in range(0, len(mb), cfg.trainer.ppo_micro_batch_size)]
                self.opt.zero_grad()
                for mic in micro:
                    logp, ent = self._forward(self.model, [rows[i] for i in mic], T, True)
                    m = mask[mic]
                    old = logp.detach() if on_policy else old_logp[mic]
                    A = advs[mic]
                    out = loss_fn(old, logp, A, m, **kw)
                    loss = out.pg_loss
                    if a.entropy_coeff:
                        loss = loss - a.entropy_coeff * loss_lib.agg_loss(ent, m, a.loss_agg_mode)
                    if a.use_kl_loss and ref_logp is not None:
                        kl = loss_lib.agg_loss(loss_lib.kl_penalty(logp, ref_logp[mic], a.kl_loss_type), m, a.loss_agg_mode)
                        loss = loss + a.kl_loss_coef * kl
                        acc["kl_loss"].append(kl.item())
                    (loss / len(micro)).backward()
                    acc["loss"].append(loss.item())
                    acc["pg_loss"].append(out.pg_loss.item())
                    acc["clipfrac_high"].append(float(out.pg_clipfrac.detach()))
                    acc["clipfrac_low"].append(float(out.pg_clipfrac_lower.detach()))
                    acc["ppo_kl"].append(float(out.ppo_kl.detach()))
                    masked += float(out.num_masked_seqs)
                    with torch.no_grad():
                        delta = (logp - old).detach()
                        valid = m.bool()
                        ratio = torch.exp(delta[valid])
                        if ratio.numel():
                            is_sum += float(ratio.sum()); is_cnt += ratio.numel()
                            is_min = min(is_min, float(ratio.min())); is_max = max(is_max, float(ratio.max()))
                        ln = m.sum(-1).clamp(min=1)
                        seq_ratio = torch.exp((delta * m).sum(-1) / ln)
                        seq_adv = (A * m).sum(-1) / ln
                        neg_low += float(((seq_adv < 0) & (seq_ratio < 1)).sum())
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.trainer.grad_clip)
                acc["grad_norm"].append(float(gn))
                if not torch.isfinite(gn):
                    self.opt.zero_grad()  # skip a non-finite step (as the reference actor)
                    skipped = True
                else:
                    self.opt.step()
        ent_mean = float(loss_lib.masked_mean(old_ent, mask))
        kl_ref = float(loss_lib.masked_mean(loss_lib.kl_penalty(old_logp, ref_logp, "low_var_kl"), mask)) if ref_logp is not None else None
        mean = lambda k: float(np.mean(acc[k])) if acc[k] else None  # noqa: E731
        return {
            "loss": mean("loss"), "pg_loss": mean("pg_loss"), "clipfrac_high": mean("clipfrac_high"),
            "clipfrac_low": mean("clipfrac_low"), "ppo_kl": mean("ppo_kl"), "grad_norm": mean("grad_norm"),
            "entropy": ent_mean, "kl_ref": kl_ref,
            "is_ratio_mean": is_sum / is_cnt if is_cnt else None,
            "is_ratio_min": is_min if is_cnt else None, "is_ratio_max": is_max if is_cnt else None,
            "neg_adv_low_is_frac": neg_low / (B * cfg.trainer.ppo_epochs),
            "masked_seqs": masked, "skipped_update": skipped,
            "adv_mean": float(loss_lib.masked_mean(advs, mask)),
            "neg_adv_frac": float(np.mean([float(advs[i, 0]) < 0 for i in range(B)])),
            "off_policy_step": float(n_mini - 1),
        }

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, step: int) -> Path:
        state = {"clip_scale": self.clip_scale, "lr": self.opt.param_groups[0]["lr"], "group_counter": self.group_counter,
                 "np_rng": self.rng.bit_generator.state, "monitor": self.monitor.state_dict()}
        path = ckpt.save_checkpoint(self.run_dir, step, self.model, self.tok, self.opt, state)
        ckpt.prune_checkpoints(self.run_dir, self.cfg.trainer.keep_checkpoints, self.monitor.last_healthy_step)
        return path

    def load_checkpoint(self, path: Path, restore_monitor: bool = False) -> int:
        """Restore weights, optimizer, RNGs and schedules; the monitor's history only on resume
        (after a rollback it keeps what it saw, so the drop that caused it stays on record)."""
        state = ckpt.load_checkpoint(path, self.model, self.opt, self.device, self._dtype())
        self.clip_scale = float(state["clip_scale"])
        for g in self.opt.param_groups:
            g["lr"] = float(state["lr"])
        self.group_counter = int(state["group_counter"])
        self.rng.bit_generator.state = state["np_rng"]
        if restore_monitor:
            self.monitor.load_state_dict(state.get("monitor"))
        return int(state["step"])

    # ------------------------------------------------------------------ main loop

    def fit(self) -> RunResult:
        torch = self.torch
        cfg = self.cfg
        if cfg.trainer.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError as e:
                raise ConfigError("trainer.tensorboard needs the tensorboard extra: pip install 'arlarena-envs[tensorboard]'") from e
        ckpts = ckpt.list_checkpoints(self.run_dir) if cfg.trainer.resume else []
        ref_dir = self.run_dir / "ref_policy"
        start = 0
        bc_eval = bc_score = None
        self.eval_pool = None
        if ckpts and ref_dir.exists():
            self.model, self.tok = self._load_policy(ref_dir)
        else:
            if self.metrics_path.exists():
                self.metrics_path.unlink()
            self.model, self.tok = self._build_initial_policy()
            if cfg.bc.enable:
                self.behaviour_cloning()
            from arlarena_baselines.tiny import save_policy

            save_policy(self.model, self.tok, ref_dir)
        self.ref = None
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
        else:
            self.save_checkpoint(0)
            if cfg.trainer.eval_at_start or cfg.trainer.total_steps == 0:
                bc_eval, bc_score = self.evaluate()
                self._log(MetricRecord(step=0, phase="eval", eval_success=bc_eval, eval_score=bc_score))
        self.pool = self._pool(cfg.rollout.num_groups * cfg.rollout.group_size, split=cfg.env.train_split)
        stopped = "completed"
        step = start
        final_eval = final_score = None
        rollbacks = 0
        bar = self._bar(cfg.trainer.total_steps - start, cfg.algorithm.name)
        try:
            for step in range(start + 1, cfg.trainer.total_steps + 1):
                kept, everything, fstats = self.gather_batch(step)
                batch = TurnBatch.from_episodes(kept)
                rows = batch.turns
                stats = self.update(batch)
                self.engine.sync_weights(self.model)
                rec = MetricRecord(
                    step=step, phase="rl",
                    success=float(np.mean([t.won for t in everything])),
                    score=float(np.mean([t.total_reward for t in everything])),
                    valid_format_ratio=float(np.mean([s.format_valid for s in rows])),
                    valid_action_ratio=float(np.mean([s.valid_action for s in rows])),
                    response_length=float(np.mean([len(s.response_ids or []) for s in rows])),
                    lr=self.opt.param_groups[0]["lr"], num_samples=len(rows), **fstats, **stats,
                )
                if cfg.trainer.eval_every and step % cfg.trainer.eval_every == 0 and step != cfg.trainer.total_steps:
                    rec.eval_success, rec.eval_score = self.evaluate()
                decision = self.monitor.update(rec)
                if decision.action != "none" or decision.alarms:
                    rec.monitor_action = decision.action
                    rec.monitor_reason = decision.reason
                    rec.monitor_alarms = alarms_json(decision.alarms)
                action = decision.action
                if action == "rollback":
                    target = ckpt.rollback_target(self.run_dir, step, self.monitor.last_healthy_step)
                    rollbacks += 1
                    if target is None or rollbacks > 3:
                        action = "stop"
                        rec.monitor_action = "stop"
                        rec.monitor_reason = f"{decision.reason}; rollback impossible or repeated, stopping"
                    else:
                        restored = self.load_checkpoint(target)
                        rec.rollback_to = restored
                        self.engine.sync_weights(self.model)
                elif action == "tighten":
                    cs = decision.clip_scale or cfg.monitor.tighten_factor
                    ls = decision.lr_scale or cfg.monitor.tighten_factor
                    self.clip_scale *= cs
                    for g in self.opt.param_groups:
                        g["lr"] *= ls
                    rec.clip_scale = self.clip_scale
                if action != "none":
                    self.monitor_actions.append({"step": step, "action": action, "reason": decision.reason})
                self._log(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(success=f"{rec.success:.2f}", loss=f"{rec.loss:.3f}" if rec.loss is not None else "-")
                if action == "stop":
                    stopped = f"monitor stop at step {step}: {decision.reason}"
                    break
                if cfg.trainer.save_every and step % cfg.trainer.save_every == 0:
                    self.save_checkpoint(step)
        finally:
            if bar is not None:
                bar.close()
        if cfg.trainer.total_steps > start or not ckpts:
            self.save_checkpoint(step)
        if step == 0 and bc_eval is not None:  # no RL step ran: the step-0 evaluation is final
            final_eval, final_score = bc_eval, bc_score
        else:
            final_eval, final_score = self.evaluate()
            self._log(MetricRecord(step=step, phase="eval", eval_success=final_eval, eval_score=final_score))
        for p in self._pools:
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


__all__ = ["RunResult", "Trainer", "run", "ArlArenaError"]
