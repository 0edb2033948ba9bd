"""One RL update over a `TurnBatch`: old / reference log-probs, advantages, then PPO-style
mini-batch steps with gradient clipping (a non-finite gradient norm skips the optimizer step,
as the reference actor does).

Per micro-batch the objective is (paper §6.2, the SAMPO objective; §4.0 for the clipped form)

    L = pg_loss(loss_mode) − c_H · agg(H) + β · agg(KL(π_θ ‖ π_ref))

with agg = `losses.agg_loss(·, m, loss_agg_mode)`, c_H = `entropy_coeff`, β = `kl_loss_coef`
(only with `use_kl_loss`). With a single mini-batch and one epoch the update is on-policy:
the old log-probs are the current ones, detached (ratio exactly 1), as verl does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from arlarena_baselines import losses as loss_lib
from arlarena_baselines.batch import TurnBatch
from arlarena_baselines.config import AlgorithmConfig, TrainerConfig
from arlarena_baselines.estimators import compute_advantages
from arlarena_baselines.logprobs import logprobs_no_grad, response_logprobs


@dataclass
class UpdateStats:
    """An update's diagnostics; every field is a `MetricRecord` field of the same name."""

    loss: float | None
    pg_loss: float | None
    clipfrac_high: float | None
    clipfrac_low: float | None
    ppo_kl: float | None
    grad_norm: float | None
    entropy: float
    kl_ref: float | None
    is_ratio_mean: float | None
    is_ratio_min: float | None
    is_ratio_max: float | None
    neg_adv_low_is_frac: float
    masked_seqs: float
    skipped_update: bool
    adv_mean: float
    neg_adv_frac: float
    off_policy_step: float

    def metrics(self) -> dict[str, Any]:
        return asdict(self)


def loss_kwargs(a: AlgorithmConfig, clip_scale: float) -> dict[str, Any]:
    """The policy loss's keyword arguments: the clip ranges (times the monitor's clip scale)
    and the settings its entry in `losses.LOSS_OPTIONS` names."""
    kw: dict[str, Any] = dict(
        loss_agg_mode=a.loss_agg_mode,
        clip_ratio=a.clip_ratio * clip_scale,
        clip_ratio_low=None if a.clip_ratio_low is None else a.clip_ratio_low * clip_scale,
        clip_ratio_high=None if a.clip_ratio_high is None else a.clip_ratio_high * clip_scale,
    )
    return kw | {k: getattr(a, k) for k in loss_lib.loss_options(a.loss_mode)}


def minibatch_order(n_rows: int, seed: int, step: int, epoch: int, shuffle: bool = True) -> list[int]:
    """The row order of one PPO epoch: a permutation from a generator seeded by (seed, step,
    epoch) when `shuffle`, else batch order. Rows arrive grouped by trajectory, so in batch
    order a mini-batch holds a few groups only, and each later optimizer step acts on rows the
    earlier ones already moved (far off-policy against a 3e-3 clip). Its own seeded generator
    leaves the task sampler's stream alone and needs no checkpoint."""
    if not shuffle:
        return list(range(n_rows))
    return [int(i) for i in np.random.default_rng([seed, step, epoch]).permutation(n_rows)]


def ppo_update(
    model: Any,
    ref: Any | None,
    opt: torch.optim.Optimizer,
    batch: TurnBatch,
    a: AlgorithmConfig,
    t: TrainerConfig,
    clip_scale: float,
    pad_id: int,
    device: torch.device,
    step: int = 0,
    temperature: float = 1.0,
) -> UpdateStats:
    """Update `model` on `batch` (`t.ppo_epochs` passes of mini-batches of
    `t.ppo_mini_batch_size` rows in `minibatch_order`, micro-batches of
    `t.ppo_micro_batch_size` accumulated). Log-probs (new, old and reference) are scored at the
    rollout `temperature`."""
    T, B = batch.width, len(batch)
    rows = batch.token_ids()
    mask = batch.mask.to(device)
    old_logp, old_ent = logprobs_no_grad(model, rows, T, pad_id, device, t.ppo_micro_batch_size, True, temperature)
    assert old_ent is not None
    ref_logp = logprobs_no_grad(ref, rows, T, pad_id, device, t.ppo_micro_batch_size, False, temperature)[0] if ref is not None else None
    advs = compute_advantages(batch, old_ent.cpu(), a).to(device)
    loss_fn = loss_lib.get_policy_loss_fn(a.loss_mode)
    kw = loss_kwargs(a, clip_scale)
    n_mini = math.ceil(B / t.ppo_mini_batch_size)
    on_policy = n_mini == 1 and t.ppo_epochs == 1
    acc: dict[str, list[float]] = {k: [] for k in ("loss", "pg_loss", "clipfrac_high", "clipfrac_low", "ppo_kl", "grad_norm")}
    is_sum = is_cnt = 0.0
    is_min, is_max = math.inf, -math.inf
    neg_low = masked = 0.0
    skipped = False
    model.train()
    for epoch in range(t.ppo_epochs):
        order = minibatch_order(B, t.seed, step, epoch, t.shuffle_minibatches)
        for m0 in range(0, B, t.ppo_mini_batch_size):
            mb = order[m0 : m0 + t.ppo_mini_batch_size]
            micro = [mb[s : s + t.ppo_micro_batch_size] for s in range(0, len(mb), t.ppo_micro_batch_size)]
            opt.zero_grad()
            for mic in micro:
                logp, ent = response_logprobs(model, [rows[i] for i in mic], T, pad_id, device, True, temperature)
                assert ent is not None
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
                (loss / len(micro)).backward()
                acc["loss"].append(loss.item())
                acc["pg_loss"].append(out.pg_loss.item())
                acc["clipfrac_high"].append(float(out.pg_clipfrac.detach()))
                acc["clipfrac_low"].append(float(out.pg_clipfrac_lower.detach()))
                acc["ppo_kl"].append(float(out.ppo_kl.detach()))
                masked += float(out.num_masked_seqs)
                with torch.no_grad():  # IS-ratio diagnostics (finding 2: A < 0 with sequence ratio < 1)
                    delta = (logp - old).detach()
                    ratio = torch.exp(delta[m.bool()])
                    if ratio.numel():
                        is_sum += float(ratio.sum())
                        is_cnt += ratio.numel()
                        is_min, is_max = min(is_min, float(ratio.min())), max(is_max, float(ratio.max()))
                    ln = m.sum(-1).clamp(min=1)
                    seq_ratio = torch.exp((delta * m).sum(-1) / ln)
                    seq_adv = (A * m).sum(-1) / ln
                    neg_low += float(((seq_adv < 0) & (seq_ratio < 1)).sum())
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            acc["grad_norm"].append(float(gn))
            if not torch.isfinite(gn):
                opt.zero_grad()
                skipped = True
            else:
                opt.step()

    def mean(k: str) -> float | None:
        return float(np.mean(acc[k])) if acc[k] else None

    kl_ref = None
    if ref_logp is not None:
        kl_ref = float(loss_lib.masked_mean(loss_lib.kl_penalty(old_logp, ref_logp, "low_var_kl"), mask))
    return UpdateStats(
        loss=mean("loss"), pg_loss=mean("pg_loss"), clipfrac_high=mean("clipfrac_high"), clipfrac_low=mean("clipfrac_low"),
        ppo_kl=mean("ppo_kl"), grad_norm=mean("grad_norm"), entropy=float(loss_lib.masked_mean(old_ent, mask)), kl_ref=kl_ref,
        is_ratio_mean=is_sum / is_cnt if is_cnt else None, is_ratio_min=is_min if is_cnt else None,
        is_ratio_max=is_max if is_cnt else None, neg_adv_low_is_frac=neg_low / (B * t.ppo_epochs), masked_seqs=masked,
        skipped_update=skipped, adv_mean=float(loss_lib.masked_mean(advs, mask)),
        neg_adv_frac=float(np.mean([float(advs[i, 0]) < 0 for i in range(B)])), off_policy_step=float(n_mini - 1),
    )
