"""Advantage estimators as pure functions: tensors (and per-row id lists) in, a tensor out.

Layout: one row = one turn (step-sample) of one trajectory. `index[i]` is the group id (the G
trajectories that share a task seed), `traj_index[i]` the trajectory id, rows of a trajectory
appear in time order. `token_level_rewards` (B, T) carries the row's score at its last valid
token: the trajectory's episode reward minus the invalid-action penalty of that turn.

Every function follows ARL-Arena (recipe/{world,shop}_agent/ppo/core_algos.py, which copies
verl-agent's gigpo/core_gigpo.py for GiGPO); where verl-agent or verl differ it is said.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from typing import Any, Hashable, Literal, Sequence

import numpy as np
import torch

from arlarena_envs.errors import ArlArenaError

GiGPOMode = Literal["mean_norm", "mean_std_norm"]


class MissingTurnError(ArlArenaError, KeyError, ValueError):
    """EMPG found a trajectory whose turn k+1 is missing although later turns exist
    (the reference raises KeyError in world_agent, ValueError in shop_agent)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _ids(x: Any) -> list:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return list(x)


def _group_stats(vals: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """mean / unbiased std of a group; a singleton group gives mean 0, std 1 (float32)."""
    if len(vals) == 1:
        return torch.tensor(0.0), torch.tensor(1.0)
    t = torch.stack(vals)
    return torch.mean(t), torch.std(t)


def compute_grpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Sequence[Hashable],
    traj_index: Sequence[Hashable] | None = None,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool = True,
    compute_mean_std_cross_steps: bool = True,
    per_traj_statistic: Literal["mean", "first"] = "mean",
) -> torch.Tensor:
    """GRPO (and Dr.GRPO) outcome advantage over step-samples.

    Paper §4.0: A_i = (r_i − mean(r)) / std(r), broadcast to every token; in multi-turn GRPO
    the group statistics run across all step-samples of the group (§4.0; §11, gotcha 3).

    s_i = Σ_t token_level_rewards[i, t]
    Group sample of g: cross_steps=True (default, the paper's GRPO): every row with index g
      (a k-step trajectory counts k times); cross_steps=False: one value per trajectory:
      ARL-Arena `vanilla_grpo` uses the mean of its rows' scores (per_traj_statistic="mean"),
      verl-agent the first row's score ("first").
    μ_g, σ_g = mean, unbiased std of the sample; a 1-element sample gives μ=0, σ=1 (float32),
      so a singleton group keeps s_i/(1+ε), not 0.
    A_i = (s_i − μ_g)/(σ_g + ε)   (GRPO),   A_i = s_i − μ_g   (Dr.GRPO, norm_adv_by_std=False)
    Output A[i, t] = A_i · m[i, t]. Masks never touch the statistics (empty rows still count)."""
    scores = token_level_rewards.sum(dim=-1)
    idx = _ids(index)
    if len(idx) != scores.shape[0]:
        raise ValueError(f"index has {len(idx)} entries for {scores.shape[0]} rows")
    samples: dict[Hashable, list[torch.Tensor]] = defaultdict(list)
    if compute_mean_std_cross_steps:
        for i, g in enumerate(idx):
            samples[g].append(scores[i])
    else:
        if traj_index is None:
            raise ValueError("compute_mean_std_cross_steps=False needs traj_index")
        tix = _ids(traj_index)
        per_traj: dict[tuple, list[torch.Tensor]] = {}
        for i, (g, t) in enumerate(zip(idx, tix)):
            per_traj.setdefault((g, t), []).append(scores[i])
        for (g, _t), vals in per_traj.items():
            if per_traj_statistic == "first":
                samples[g].append(vals[0])
            else:
                samples[g].append(torch.mean(torch.stack(vals)))
    stats = {g: _group_stats(v) for g, v in samples.items()}
    out = scores.clone()
    for i, g in enumerate(idx):
        mean, std = stats[g]
        if norm_adv_by_std_in_grpo:
            out[i] = (scores[i] - mean) / (std + epsilon)
        else:
            out[i] = scores[i] - mean
    return out.unsqueeze(-1) * response_mask


def compute_drgrpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Sequence[Hashable],
    traj_index: Sequence[Hashable] | None = None,
) -> torch.Tensor:
    """Dr.GRPO advantage: A_i = s_i − μ_g (GRPO cross-steps statistics, no std division)."""
    return compute_grpo_outcome_advantage(
        token_level_rewards, response_mask, index, traj_index, norm_adv_by_std_in_grpo=False
    )


# ------------------------------------------------------------------------------- GiGPO


def compute_step_discounted_returns(
    rewards: torch.Tensor | Sequence[float], traj_index: Sequence[Hashable], gamma: float = 0.95
) -> torch.Tensor:
    """Discounted return of every step-sample within its trajectory (verl-agent).

    Paper §4.3 (GiGPO step term): R_t = r_t + γ·R_{t+1}, γ = 0.95.

    For each trajectory, its rows in batch order form the time axis; backwards
    G_t = r_t + γ·G_{t+1}, with 0 after the last row. Computed in float32; returns (B,) float32."""
    r = torch.as_tensor(rewards, dtype=torch.float32)
    tix = _ids(traj_index)
    out = torch.zeros_like(r)
    rows: dict[Hashable, list[int]] = defaultdict(list)
    for i, t in enumerate(tix):
        rows[t].append(i)
    g32 = torch.tensor(gamma, dtype=torch.float32)
    for t, ids in rows.items():
        running = torch.tensor(0.0, dtype=torch.float32)
        for i in reversed(ids):
            running = r[i] + g32 * running
            out[i] = running
    return out


def episode_norm_reward(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Sequence[Hashable],
    traj_index: Sequence[Hashable],
    epsilon: float = 1e-6,
    remove_std: bool = True,
    compute_mean_std_cross_steps: bool = True,
) -> torch.Tensor:
    """GiGPO episode term (verl-agent `episode_norm_reward`).

    s_i = Σ_t token_level_rewards; group stats by `index` over all step rows (cross_steps) or
    over the first row of each (index, traj) (cross_steps=False, verl-agent's choice here);
    singleton group: μ=0, σ=1.  A_E = s − μ (remove_std, "mean_norm") or (s − μ)/(σ + ε)."""
    return compute_grpo_outcome_advantage(
        token_level_rewards,
        response_mask,
        index,
        traj_index,
        epsilon=epsilon,
        norm_adv_by_std_in_grpo=not remove_std,
        compute_mean_std_cross_steps=compute_mean_std_cross_steps,
        per_traj_statistic="first",
    )


def to_hashable(obs: Any) -> Hashable:
    """verl-agent `to_hashable`: str/int/float/bool as is; numpy scalars -> .item(); ndarray ->
    tuple(flatten); list/tuple -> tuple (recursively); dict -> sorted tuple of items."""
    if isinstance(obs, (str, int, float, bool)) or obs is None:
        return obs
    if isinstance(obs, np.generic):
        return obs.item()
    if isinstance(obs, np.ndarray):
        return tuple(obs.flatten().tolist())
    if isinstance(obs, torch.Tensor):
        return tuple(obs.flatten().tolist()) if obs.ndim else obs.item()
    if isinstance(obs, (list, tuple)):
        return tuple(to_hashable(o) for o in obs)
    if isinstance(obs, dict):
        return tuple(sorted((k, to_hashable(v)) for k, v in obs.items()))
    raise TypeError(f"cannot hash an anchor observation of type {type(obs).__name__}")


def build_step_group(
    anchor_obs: Sequence[Any],
    index: Sequence[Hashable],
    enable_similarity: bool = False,
    similarity_thresh: float = 0.95,
) -> np.ndarray:
    """Anchor-state step groups (verl-agent `build_step_group`).

    Clusters form only inside one `index` group (the same anchor in two task groups gives two
    step groups). Exact mode: equality of `to_hashable(obs)`. Similarity mode (strings only):
    greedy in batch order, an obs joins the first cluster whose FIRST member has
    difflib.SequenceMatcher(None, a, b).ratio() >= thresh, else starts a new one.
    Returns an int label per row (labels are unique across groups)."""
    idx = _ids(index)
    if len(anchor_obs) != len(idx):
        raise ValueError(f"anchor_obs has {len(anchor_obs)} entries for {len(idx)} rows")
    if enable_similarity and not 0 < similarity_thresh < 1:
        raise ValueError(f"similarity_thresh must be in (0, 1), got {similarity_thresh}")
    labels = np.full(len(idx), -1, dtype=np.int64)
    next_label = 0
    order: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(idx):
        order[g].append(i)
    for g in order:  # first-appearance order of the groups
        rows = order[g]
        if enable_similarity:
            clusters: list[tuple[str, int]] = []
            for i in rows:
                obs = anchor_obs[i]
                if not isinstance(obs, str):
                    raise TypeError("similarity step grouping needs string anchors")
                for rep, lab in clusters:
                    if difflib.SequenceMatcher(None, obs, rep).ratio() >= similarity_thresh:
                        labels[i] = lab
                        break
                else:
                    clusters.append((obs, next_label))
                    labels[i] = next_label
                    next_label += 1
        else:
            seen: dict[Hashable, int] = {}
            for i in rows:
                key = to_hashable(anchor_obs[i])
                if key not in seen:
                    seen[key] = next_label
                    next_label += 1
                labels[i] = seen[key]
    return labels


def step_norm_reward(
    step_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    step_group_ids: Sequence[Hashable],
    epsilon: float = 1e-6,
    remove_std: bool = True,
) -> torch.Tensor:
    """GiGPO step term (verl-agent `step_norm_reward`): normalise the discounted step returns
    within anchor groups. Singleton group: μ = the element itself (so A_S = 0), σ = 1.
    A_S = r − μ (remove_std) or (r − μ)/(σ + ε); output A_S[:, None] · m."""
    ids = _ids(step_group_ids)
    vals: dict[Hashable, list[torch.Tensor]] = defaultdict(list)
    for i, g in enumerate(ids):
        vals[g].append(step_rewards[i])
    stats = {}
    for g, v in vals.items():
        if len(v) == 1:
            stats[g] = (v[0], torch.tensor(1.0))
        else:
            t = torch.stack(v)
            stats[g] = (torch.mean(t), torch.std(t))
    out = step_rewards.clone()
    for i, g in enumerate(ids):
        mean, std = stats[g]
        out[i] = step_rewards[i] - mean if remove_std else (step_rewards[i] - mean) / (std + epsilon)
    return out.unsqueeze(-1) * response_mask


def compute_gigpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    step_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    anchor_obs: Sequence[Any],
    index: Sequence[Hashable],
    traj_index: Sequence[Hashable],
    epsilon: float = 1e-6,
    step_advantage_w: float = 1.0,
    mode: GiGPOMode = "mean_norm",
    enable_similarity: bool = False,
    similarity_thresh: float = 0.95,
) -> torch.Tensor:
    """GiGPO advantage (verl-agent / ARL-Arena): A = A_E + ω·A_S.

    Paper §4.3 (GiGPO, summary figure): A'_{i,k} = A_i + ω·A_step(ŷ_{i,k}); the step term
    normalises the γ-discounted return R_t = r_t + γR_{t+1} within anchor-state groups.

    A_E = episode_norm_reward(cross-steps; mean_norm: s − μ, mean_std_norm: (s − μ)/(σ + ε);
          singleton group keeps s, or s/(1+ε))
    A_S = step_norm_reward of `step_rewards` (the γ-discounted step returns minus the invalid
          penalty at invalid rows) within anchor groups = build_step_group(anchor_obs, index);
          singleton anchor group gives 0.
    mode: "mean_norm" (config default; WebShop SAMPO) or "mean_std_norm" (ALFWorld scripts)."""
    return gigpo_advantage_components(
        token_level_rewards, step_rewards, response_mask, anchor_obs, index, traj_index,
        epsilon, step_advantage_w, mode, enable_similarity, similarity_thresh,
    )["advantages"]


def gigpo_advantage_components(
    token_level_rewards: torch.Tensor,
    step_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    anchor_obs: Sequence[Any],
    index: Sequence[Hashable],
    traj_index: Sequence[Hashable],
    epsilon: float = 1e-6,
    step_advantage_w: float = 1.0,
    mode: GiGPOMode = "mean_norm",
    enable_similarity: bool = False,
    similarity_thresh: float = 0.95,
) -> dict[str, Any]:
    """GiGPO with its diagnostics: advantages, episode_advantages_component,
    step_advantages_component, step_group_labels."""
    if mode == "mean_norm":
        remove_std = True
    elif mode == "mean_std_norm":
        remove_std = False
    else:
        raise ValueError(f"unknown GiGPO mode {mode!r}; choose mean_norm or mean_std_norm")
    a_ep = episode_norm_reward(token_level_rewards, response_mask, index, traj_index, epsilon, remove_std, True)
    labels = build_step_group(anchor_obs, index, enable_similarity, similarity_thresh)
    a_st = step_norm_reward(step_rewards, response_mask, labels.tolist(), epsilon, remove_std)
    return {
        "advantages": a_ep + step_advantage_w * a_st,
        "episode_advantages_component": a_ep,
        "step_advantages_component": a_st,
        "step_group_labels": labels,
    }


# ------------------------------------------------------------------------------- EMPG

def compute_empg_advantage(
    advantages: torch.Tensor,
    old_entropy: torch.Tensor,
    response_mask: torch.Tensor,
    turns: Sequence[int],
    traj_index: Sequence[Hashable],
    k: float = 1.0,
    k_f: float = 1.0,
    zeta: float = 0.05,
) -> torch.Tensor:
    """EMPG modulation of (usually GRPO) advantages (ARL-Arena `compute_EMPG_advantage`).

    Paper §4.3 (EMPG, summary figure): A' = g(H_k)·A_i + ζ·f(H_{k+1}).

    H_i = Σ_t H·m / max(Σ_t m, 1);  Hn = (H − min H)/(max H − min H + 1e-8)   (over the batch)
    g = exp(−k·Hn); g = g/(mean(g) + 1e-8)  (float32);  f = exp(−k_f·Hn)  (float32)
    turn_i = the row's turn index (`TurnRecord.turn`; the reference reads it back from the
      prompt text with a regex, which gives 0 on every row when the prompt shows no history)
    table[traj][turn] = f_i (later rows overwrite);  A_i ← g_i·A_i, then
    A_i += ζ·table[traj_i][turn_i+1] if turn_i + 1 < len(table[traj_i])
    (a missing turn there raises MissingTurnError, a KeyError/ValueError as the reference)
    A ← A − mean_i A[i, 0]  (first-token column, after modulation);  A ← A·m"""
    mask_f = response_mask.to(old_entropy.dtype)
    h = (old_entropy * mask_f).sum(-1) / mask_f.sum(-1).clamp(min=1.0)
    hn = (h - h.min()) / (h.max() - h.min() + 1e-8)
    g = torch.exp(-k * hn)
    g = (g / (g.mean() + 1e-8)).to(torch.float32)
    f = torch.exp(-k_f * hn).to(torch.float32)
    tix = _ids(traj_index)
    if len(turns) != len(tix) or len(tix) != advantages.shape[0]:
        raise ValueError("turns, traj_index and advantages must have one entry per row")
    turns = [int(t) for t in turns]
    table: dict[Hashable, dict[int, torch.Tensor]] = defaultdict(dict)
    for i, (t, turn) in enumerate(zip(tix, turns)):
        table[t][turn] = f[i]
    adv = advantages.clone()
    for i, (t, turn) in enumerate(zip(tix, turns)):
        adv[i] = adv[i] * g[i]
        if turn + 1 < len(table[t]):
            if turn + 1 not in table[t]:
                raise MissingTurnError(
                    f"EMPG: trajectory {t!r} has no turn {turn + 1} but has {len(table[t])} turns; "
                    "every turn of a trajectory must be in the batch"
                )
            adv[i] = adv[i] + zeta * table[t][turn + 1]
    adv = adv - adv[:, 0].mean()
    return adv * response_mask
