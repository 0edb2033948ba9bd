"""Policy losses, loss aggregation and the KL / entropy terms, as pure tensor functions.

Layout: one row = one turn's response, shape (B, T), right-padded; `response_mask` is 1 on
valid tokens. Every function follows ARL-Arena (WillDreamer/ARL-Arena a25a2a2,
`verl/trainer/ppo/core_algos.py`) unless its docstring says otherwise; differences from
verl-agent and verl are noted where they matter (see docs/trainer.md).

Notation in the docstrings: Δ = log π_θ − log π_old, r = exp(Δ), m = mask, sg = stop-gradient,
mmean(v, m) = Σ where(m, v, 0)·m / (Σ m + 1e-8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arlarena_envs.errors import UnknownNameError

LOSS_AGG_MODES: tuple[str, ...] = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
@dataclass
class PolicyLossOutput:
    """What every policy loss returns: the scalar loss and its diagnostics (0-d tensors)."""

    pg_loss: torch.Tensor
    pg_clipfrac: torch.Tensor
    ppo_kl: torch.Tensor
    pg_clipfrac_lower: torch.Tensor
    num_masked_seqs: torch.Tensor


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """mmean(v, m) = Σ where(m, v, 0)·m / (Σ m + 1e-8)  (ARL-Arena / verl).

    The `where` keeps NaN/inf at masked positions out of the result (verl-agent's version,
    Σ v·m / (Σ m + 1e-8), lets them leak)."""
    mask_f = mask.to(values.dtype) if mask.dtype == torch.bool else mask
    v = torch.where(mask.bool(), values, torch.zeros_like(values)) * mask_f
    if dim is None:
        return v.sum() / (mask_f.sum() + 1e-8)
    return v.sum(dim) / (mask_f.sum(dim) + 1e-8)


def _zero_masked(loss_mat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask_f = mask.to(loss_mat.dtype)
    return torch.where(mask.bool(), loss_mat, torch.zeros_like(loss_mat)) * mask_f


def agg_loss(loss_mat: torch.Tensor, loss_mask: torch.Tensor, loss_agg_mode: str) -> torch.Tensor:
    """Aggregate a (B, T) token loss to a scalar (ARL-Arena `agg_loss`).

    Paper §4.1: token-mean weighs every token 1/Σ T_i (GRPO); seq-mean-token-mean weighs every
    turn 1/G, its tokens 1/T_i (GRPO_ST).

    token-mean:              Σ_{i,t} m·L / (Σ m + 1e-8)                     (0 if no token)
    seq-mean-token-mean:     mean over rows with Σ_t m > 0 of Σ_t m·L / Σ_t m   (0.0 if none;
                             verl-agent would give NaN on any empty row, verl NaN if all empty)
    seq-mean-token-sum:      mean over ALL B rows of Σ_t m·L                (empty rows count 0;
                             verl excludes them)
    seq-mean-token-sum-norm: Σ_{i,t} m·L / T,  T = loss_mask.shape[-1]

    Masked positions are zeroed with `where` before summing, so NaN/inf there never leak.
    Any other mode raises ValueError."""
    if loss_agg_mode == "token-mean":
        return masked_mean(loss_mat, loss_mask)
    lm = _zero_masked(loss_mat, loss_mask)
    mask_f = loss_mask.to(loss_mat.dtype)
    if loss_agg_mode == "seq-mean-token-mean":
        tok = mask_f.sum(-1)
        keep = tok > 0
        if not bool(keep.any()):
            return torch.zeros((), dtype=loss_mat.dtype, device=loss_mat.device) + 0.0 * lm.sum()
        seq = lm.sum(-1)[keep] / tok[keep]
        return seq.mean()
    if loss_agg_mode == "seq-mean-token-sum":
        return lm.sum(-1).mean()
    if loss_agg_mode == "seq-mean-token-sum-norm":
        return lm.sum() / loss_mask.shape[-1]
    raise ValueError(f"invalid loss_agg_mode {loss_agg_mode!r}; choose one of {LOSS_AGG_MODES}")


def apply_seq_mask(
    advantages: torch.Tensor,
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    response_mask: torch.Tensor,
    seq_mask_delta: float = 0.223,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ARL-Arena sequence mask (Finding 3): drop turns with negative advantage whose policy
    probability has already been pushed down.

    Paper §4.2 (GRPO_SM, findings 2-3): drop whole negative-advantage sequences whose mean
    log-ratio log(π_old/π_θ) exceeds δ.

    len_i = max(Σ_t m, 1);  Ā_i = Σ_t A·m / len_i;  ℓ_i = Σ_t (log π_old − log π_θ)·m / len_i
    reject_i = (Ā_i < 0) & (ℓ_i > δ);  effective_mask = m & ~reject_i

    Computed on the UNCLAMPED log-ratio. Returns (effective_mask in the mask's dtype,
    num_masked_seqs as a 0-d tensor)."""
    mask_f = response_mask.to(advantages.dtype)
    length = mask_f.sum(-1).clamp(min=1.0)
    adv_mean = (advantages * mask_f).sum(-1) / length
    neg_kl = ((old_log_prob - log_prob) * mask_f).sum(-1) / length
    reject = (adv_mean < 0) & (neg_kl > seq_mask_delta)
    eff = response_mask.bool() & ~reject.unsqueeze(-1)
    return eff.to(response_mask.dtype), reject.sum()


def _eps(clip_ratio: float, low: float | None, high: float | None) -> tuple[float, float]:
    return (low if low is not None else clip_ratio), (high if high is not None else clip_ratio)


def compute_policy_loss_vanilla(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    clip_ratio: float = 0.2,
    clip_ratio_low: float | None = None,
    clip_ratio_high: float | None = None,
    clip_ratio_c: float = 3.0,
    use_seq_mask: bool = False,
    seq_mask_delta: float = 0.223,
    rollout_log_probs: torch.Tensor | None = None,
    tis_imp_ratio_cap: float = -1.0,
) -> PolicyLossOutput:
    """PPO token clip with clip-higher and dual clip (ARL-Arena `compute_policy_loss_vanilla`).

    Paper §4.0 (the GRPO baseline objective, summary figure): J = (1/Σ_i T_i) Σ_i Σ_t
    min(w_t·A_i, clip(w_t, 1±ε)·A_i), w_t = π_θ/π_old; the reference code adds the dual clip
    (c = 3) for A < 0 and the ±20 log-ratio clamp, written out below.

    Δ = clamp(log π_θ − log π_old, −20, 20)   (verl-agent does not clamp);  r = exp(Δ)
    L1 = −A·r;  L2 = −A·clamp(r, 1−ε_low, 1+ε_high);  C1 = max(L1, L2)
    L3 = −A·c (c = clip_ratio_c > 1);  C2 = min(L3, C1);  L = where(A < 0, C2, C1)
    optional TIS: L *= min(exp(log π_old − log π_rollout), cap) when cap > 0 and given
    pg_loss = agg_loss(L, m_eff, mode); pg_clipfrac = mmean(L2 > L1, m_eff);
    ppo_kl = mmean(−Δ, m_eff); pg_clipfrac_lower = mmean((C1 > L3) & (A < 0), m_eff)
    With `use_seq_mask`, m_eff is the sequence mask computed from the unclamped Δ."""
    if clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c must be > 1 (dual clip), got {clip_ratio_c}")
    eps_low, eps_high = _eps(clip_ratio, clip_ratio_low, clip_ratio_high)
    num_masked = torch.zeros((), dtype=torch.long, device=log_prob.device)
    mask = response_mask
    if use_seq_mask:
        mask, num_masked = apply_seq_mask(advantages, log_prob, old_log_prob, response_mask, seq_mask_delta)
    delta = torch.clamp(log_prob - old_log_prob, -20.0, 20.0)
    ratio = torch.exp(delta)
    ppo_kl = masked_mean(-delta, mask)
    l1 = -advantages * ratio
    l2 = -advantages * torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    c1 = torch.maximum(l1, l2)
    clipfrac = masked_mean(torch.gt(l2, l1).to(log_prob.dtype), mask)
    l3 = -advantages * clip_ratio_c
    c2 = torch.min(l3, c1)
    clipfrac_lower = masked_mean(torch.gt(c1, l3) * (advantages < 0).to(log_prob.dtype), mask)
    loss = torch.where(advantages < 0, c2, c1)
    if tis_imp_ratio_cap > 0 and rollout_log_probs is not None:
        tis = torch.exp(old_log_prob - rollout_log_probs).clamp(max=tis_imp_ratio_cap)
        loss = loss * tis
    pg_loss = agg_loss(loss, mask, loss_agg_mode)
    return PolicyLossOutput(pg_loss, clipfrac, ppo_kl, clipfrac_lower, num_masked)


def compute_policy_loss_drgrpo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "seq-mean-token-sum",
    clip_ratio: float = 0.2,
    clip_ratio_low: float | None = None,
    clip_ratio_high: float | None = None,
    clip_ratio_c: float = 3.0,
    max_response_len_per_turn: int = 500,
    rollout_log_probs: torch.Tensor | None = None,
    tis_imp_ratio_cap: float = -1.0,
) -> PolicyLossOutput:
    """ARL-Arena Dr.GRPO loss: the vanilla PPO loss without the sequence mask (TIS included when
    given), then pg_loss /= max_response_len_per_turn (paper §4.1: in the code as `drgrpo`, no
    table row). The ARL-Arena trainer uses loss_agg_mode = seq-mean-token-sum, so the net
    per-token weight is 1/(B·L_max). Pair it with Dr.GRPO advantages (no std normalisation)."""
    out = compute_policy_loss_vanilla(
        old_log_prob, log_prob, advantages, response_mask, loss_agg_mode,
        clip_ratio, clip_ratio_low, clip_ratio_high, clip_ratio_c,
        rollout_log_probs=rollout_log_probs, tis_imp_ratio_cap=tis_imp_ratio_cap,
    )
    out.pg_loss = out.pg_loss / max_response_len_per_turn
    return out


def compute_policy_loss_gspo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "seq-mean-token-mean",
    clip_ratio: float = 0.2,
    clip_ratio_low: float | None = None,
    clip_ratio_high: float | None = None,
) -> PolicyLossOutput:
    """GSPO, GSPO-token form, with a turn-level (one response) sequence ratio.

    Paper §4.2 (GSPO): J = (1/Σ T_i) Σ Σ min(s_i·A_i, clip(s_i, 1±ε)·A_i),
    s_i = exp((1/|T_i|) Σ_t log π_θ/π_old); SAMPO's loss (§6.2) in the GSPO-token form
    s_{i,t} = sg(s_i)·π_θ(y_t)/sg(π_θ(y_t)). Reference code: ARL-Arena `compute_policy_loss_gspo`.

    Δ = log π_θ − log π_old (no ±20 clamp);  len_i = max(Σ_t m, 1);  Δ̄_i = Σ_t Δ·m / len_i
    log s[i,t] = log π_θ[i,t] − sg(log π_θ[i,t]) + sg(Δ̄_i),  clamped to ≤ 10;  s = exp(log s)
    L = max(−A·s, −A·clamp(s, 1−ε_low, 1+ε_high))   (no dual clip)
    pg_loss = agg_loss(L, m, "seq-mean-token-mean")  ALWAYS: the `loss_agg_mode` argument is
    ignored, as in all three references (ARL-Arena's agg: empty rows dropped, 0 if all empty).
    pg_clipfrac = mmean(L2 > L1, m); pg_clipfrac_lower = 0; ppo_kl = mmean(−Δ, m).
    Gradient on an unclipped token: −A·s_i·∇log π_θ(y_t) (through the token's own log-prob)."""
    del loss_agg_mode  # GSPO always aggregates seq-mean-token-mean (reference behaviour)
    eps_low, eps_high = _eps(clip_ratio, clip_ratio_low, clip_ratio_high)
    mask_f = response_mask.to(log_prob.dtype)
    delta = log_prob - old_log_prob
    length = mask_f.sum(-1).clamp(min=1.0)
    seq_delta = (delta * mask_f).sum(-1) / length
    log_s = log_prob - log_prob.detach() + seq_delta.detach().unsqueeze(-1)
    log_s = torch.clamp(log_s, max=10.0)
    s = torch.exp(log_s)
    l1 = -advantages * s
    l2 = -advantages * torch.clamp(s, 1 - eps_low, 1 + eps_high)
    loss = torch.maximum(l1, l2)
    pg_loss = agg_loss(loss, response_mask, "seq-mean-token-mean")
    clipfrac = masked_mean(torch.gt(l2, l1).to(log_prob.dtype), response_mask)
    ppo_kl = masked_mean(-delta, response_mask)
    zero = torch.zeros((), dtype=log_prob.dtype, device=log_prob.device)
    return PolicyLossOutput(pg_loss, clipfrac, ppo_kl, zero, torch.zeros((), dtype=torch.long))


def compute_policy_loss_sapo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    clip_ratio: float = 0.2,
    clip_ratio_low: float | None = None,
    clip_ratio_high: float | None = None,
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
    use_seq_mask: bool = False,
    seq_mask_delta: float = 0.223,
    rollout_log_probs: torch.Tensor | None = None,
    tis_imp_ratio_cap: float = -1.0,
) -> PolicyLossOutput:
    """SAPO soft gate (ARL-Arena `compute_policy_loss_sapo`).

    Paper §4.2 (SAPO): J = (1/Σ T_i) Σ Σ f_{i,t}(w_t)·A_i, f = (4/τ)·σ(τ(w_t − 1)),
    τ = τ_pos if A > 0 else τ_neg (1.0 / 1.05).

    [optional sequence mask from the unclamped Δ -> m_eff]
    Δ = clamp(Δ, −20, 20); r = exp(Δ)
    Ā_i = Σ_t A·m_eff / max(Σ_t m_eff, 1);  τ_i = τ_pos if Ā_i > 0 else τ_neg  (SEQUENCE sign;
    verl picks τ per token)
    gate = 4/τ_i · sigmoid(τ_i·(r − 1));  L = −gate·A;  pg_loss = agg_loss(L, m_eff, mode)
    pg_clipfrac (diagnostic) = mmean(clamp([r>1+ε_high & A>0] + [r<1−ε_low & A<0], max=1), m_eff)
    At r = 1 the per-token loss is −2A/τ; the gradient there is −A·r (as unclipped PPO)."""
    eps_low, eps_high = _eps(clip_ratio, clip_ratio_low, clip_ratio_high)
    num_masked = torch.zeros((), dtype=torch.long, device=log_prob.device)
    mask = response_mask
    if use_seq_mask:
        mask, num_masked = apply_seq_mask(advantages, log_prob, old_log_prob, response_mask, seq_mask_delta)
    delta = torch.clamp(log_prob - old_log_prob, -20.0, 20.0)
    ratio = torch.exp(delta)
    ppo_kl = masked_mean(-delta, mask)
    mask_f = mask.to(log_prob.dtype)
    adv_seq = (advantages * mask_f).sum(-1) / mask_f.sum(-1).clamp(min=1.0)
    tau = torch.where(adv_seq > 0, torch.full_like(adv_seq, tau_pos), torch.full_like(adv_seq, tau_neg)).unsqueeze(-1)
    gate = 4.0 / tau * torch.sigmoid(tau * (ratio - 1.0))
    loss = -gate * advantages
    if tis_imp_ratio_cap > 0 and rollout_log_probs is not None:
        loss = loss * torch.exp(old_log_prob - rollout_log_probs).clamp(max=tis_imp_ratio_cap)
    pg_loss = agg_loss(loss, mask, loss_agg_mode)
    hi = ((ratio > 1 + eps_high) & (advantages > 0)).to(log_prob.dtype)
    lo = ((ratio < 1 - eps_low) & (advantages < 0)).to(log_prob.dtype)
    clipfrac = masked_mean(torch.clamp(hi + lo, max=1.0), mask)
    zero = torch.zeros((), dtype=log_prob.dtype, device=log_prob.device)
    return PolicyLossOutput(pg_loss, clipfrac, ppo_kl, zero, num_masked)


def compute_policy_loss_cispo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    clip_ratio: float = 0.2,
    clip_ratio_low: float | None = None,
    clip_ratio_high: float | None = None,
    use_seq_mask: bool = False,
    seq_mask_delta: float = 0.223,
) -> PolicyLossOutput:
    """CISPO (ARL-Arena `compute_policy_loss_cispo`): clipped, stop-gradient IS weight on the
    REINFORCE term.

    Paper §4.2 (CISPO): J = (1/Σ T_i) Σ Σ sg(ŵ_t)·A_i·log π_θ, ŵ_t = clip(w_t, 1−ε_low, 1+ε_high).

    [optional sequence mask from the unclamped Δ -> m_eff]
    Δ = clamp(Δ, −20, 20); r = exp(Δ); r̂ = clamp(r, 1−ε_low, 1+ε_high)
    L = −sg(r̂)·A·log π_θ (times m_eff);  pg_loss = agg_loss(L, m_eff, mode)
    pg_clipfrac = mmean(r ≠ r̂, m_eff); pg_clipfrac_lower = 0.  ε_low = 1.0 means no lower clip.
    The loss VALUE depends on the absolute log-prob; the gradient is −r̂·A/N on every token."""
    eps_low, eps_high = _eps(clip_ratio, clip_ratio_low, clip_ratio_high)
    num_masked = torch.zeros((), dtype=torch.long, device=log_prob.device)
    mask = response_mask
    if use_seq_mask:
        mask, num_masked = apply_seq_mask(advantages, log_prob, old_log_prob, response_mask, seq_mask_delta)
    delta = torch.clamp(log_prob - old_log_prob, -20.0, 20.0)
    ratio = torch.exp(delta)
    ppo_kl = masked_mean(-delta, mask)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    loss = -clipped.detach() * advantages * log_prob
    loss = loss * mask.to(log_prob.dtype)
    pg_loss = agg_loss(loss, mask, loss_agg_mode)
    clipfrac = masked_mean(torch.ne(ratio, clipped).to(log_prob.dtype), mask)
    zero = torch.zeros((), dtype=log_prob.dtype, device=log_prob.device)
    return PolicyLossOutput(pg_loss, clipfrac, ppo_kl, zero, num_masked)


def kl_penalty(logprob: torch.Tensor, ref_logprob: torch.Tensor, kind: str = "low_var_kl") -> torch.Tensor:
    """Per-token KL estimate between the policy and the reference (ARL-Arena / verl).

    Paper §6.2 / §7: the auxiliary KL loss β·KL_k3(π_θ ‖ π_ref), k3 = "low_var_kl", β = 0.01.

    kl, k1: logprob − ref;  abs: |logprob − ref|;  mse, k2: ½(logprob − ref)²
    low_var_kl, k3: d = clamp(ref − logprob, −20, 20); clamp(exp(d) − d − 1, −10, 10)
      (the ±20 pre-clamp is ARL-Arena/verl; without it, verl-agent's gradient turns NaN for
      large d). "full" and the straight-through "+" kinds raise NotImplementedError, as the
      reference commit does."""
    if kind in ("kl", "k1"):
        return logprob - ref_logprob
    if kind == "abs":
        return (logprob - ref_logprob).abs()
    if kind in ("mse", "k2"):
        return 0.5 * (logprob - ref_logprob).square()
    if kind in ("low_var_kl", "k3"):
        d = torch.clamp(ref_logprob - logprob, min=-20.0, max=20.0)
        return torch.clamp(torch.exp(d) - d - 1, min=-10.0, max=10.0)
    if kind == "full" or kind.endswith("+"):
        raise NotImplementedError(f"kl kind {kind!r} is not implemented (as in the reference); use low_var_kl")
    raise UnknownKLKind(f"unknown kl kind {kind!r}; choose kl/k1, abs, mse/k2 or low_var_kl/k3")


class UnknownKLKind(ValueError, NotImplementedError):
    """A KL estimator name that does not exist: a bad value (ValueError), and what the reference
    raises for any kind it does not compute (NotImplementedError)."""


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Token entropy H = logsumexp(z) − Σ softmax(z)·z, over the last dim."""
    logits = logits.float()
    pd = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (pd * logits).sum(-1)


POLICY_LOSSES = {
    "vanilla": compute_policy_loss_vanilla,
    "drgrpo": compute_policy_loss_drgrpo,
    "gspo": compute_policy_loss_gspo,
    "sapo": compute_policy_loss_sapo,
    "cispo": compute_policy_loss_cispo,
}


# the AlgorithmConfig settings each loss takes besides the clip ranges and loss_agg_mode
LOSS_OPTIONS: dict[str, tuple[str, ...]] = {
    "vanilla": ("clip_ratio_c", "use_seq_mask", "seq_mask_delta"),
    "drgrpo": ("clip_ratio_c", "max_response_len_per_turn"),
    "gspo": (),
    "sapo": ("use_seq_mask", "seq_mask_delta", "tau_pos", "tau_neg"),
    "cispo": ("use_seq_mask", "seq_mask_delta"),
}


def loss_options(name: str) -> tuple[str, ...]:
    """The extra settings loss `name` takes (see LOSS_OPTIONS)."""
    get_policy_loss_fn(name)
    return LOSS_OPTIONS[name]


def get_policy_loss_fn(name: str):
    """The loss function registered under `name` (vanilla, drgrpo, gspo, sapo, cispo)."""
    try:
        return POLICY_LOSSES[name]
    except KeyError:
        raise UnknownNameError(f"unknown policy loss {name!r}; set algorithm.loss_mode to one of {sorted(POLICY_LOSSES)}") from None
