"""The trainer's advantage estimators, by name: a `TurnBatch` in, (B, T) advantages out.

Every estimator reads the turn records' fields (episode reward, penalty, turn index, state
hash), never their text. The row score is the ARL-Arena reward placement (paper §3.1, "reward
placement" and "invalid-action penalty"): s_i = R_episode − c·[turn i invalid], put on the
row's last response token; c = `invalid_action_penalty_coef` when `use_invalid_action_penalty`.
"""

from __future__ import annotations

from typing import Callable

import torch

from arlarena_envs.errors import UnknownNameError

from arlarena_baselines import advantages as adv_lib
from arlarena_baselines.batch import TurnBatch
from arlarena_baselines.config import AlgorithmConfig

Estimator = Callable[[TurnBatch, torch.Tensor, torch.Tensor, AlgorithmConfig], torch.Tensor]


def penalty_coef(a: AlgorithmConfig) -> float:
    return a.invalid_action_penalty_coef if a.use_invalid_action_penalty else 0.0


def row_scores(batch: TurnBatch, a: AlgorithmConfig) -> torch.Tensor:
    """(B,) float32: s_i = R_episode(i) − c·[turn i invalid] (Python floats, then float32)."""
    c = penalty_coef(a)
    return torch.tensor([r - c * (not t.valid_action) for r, t in zip(batch.episode_native_reward, batch.turns)], dtype=torch.float32)


def token_level_rewards(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T): s_i at row i's last response token; an empty response keeps it at t = 0 (masks
    never touch the group statistics)."""
    tlr = torch.zeros(mask.shape)
    lengths = mask.sum(-1).long()
    for i in range(mask.shape[0]):
        tlr[i, max(int(lengths[i]) - 1, 0)] = scores[i]
    return tlr


def _grpo(batch: TurnBatch, tlr: torch.Tensor, old_entropy: torch.Tensor, a: AlgorithmConfig) -> torch.Tensor:
    return adv_lib.compute_grpo_outcome_advantage(tlr, batch.mask, batch.group, batch.episode, a.epsilon)


def _drgrpo(batch: TurnBatch, tlr: torch.Tensor, old_entropy: torch.Tensor, a: AlgorithmConfig) -> torch.Tensor:
    return adv_lib.compute_grpo_outcome_advantage(tlr, batch.mask, batch.group, batch.episode, a.epsilon, norm_adv_by_std_in_grpo=False)


def _vanilla_grpo(batch: TurnBatch, tlr: torch.Tensor, old_entropy: torch.Tensor, a: AlgorithmConfig) -> torch.Tensor:
    return adv_lib.compute_grpo_outcome_advantage(
        tlr, batch.mask, batch.group, batch.episode, a.epsilon, compute_mean_std_cross_steps=False
    )


def _gigpo(batch: TurnBatch, tlr: torch.Tensor, old_entropy: torch.Tensor, a: AlgorithmConfig) -> torch.Tensor:
    c = penalty_coef(a)
    sr = adv_lib.compute_step_discounted_returns([t.native_reward for t in batch.turns], batch.episode, a.gamma)
    sr = sr - torch.tensor([c * (not t.valid_action) for t in batch.turns], dtype=torch.float32)
    anchors = [t.state_hash for t in batch.turns]
    return adv_lib.compute_gigpo_outcome_advantage(
        tlr, sr, batch.mask, anchors, batch.group, batch.episode, a.epsilon, a.step_advantage_w, a.gigpo_mode
    )


def _empg(batch: TurnBatch, tlr: torch.Tensor, old_entropy: torch.Tensor, a: AlgorithmConfig) -> torch.Tensor:
    grpo = _grpo(batch, tlr, old_entropy, a)
    turns = [t.turn for t in batch.turns]
    return adv_lib.compute_empg_advantage(grpo, old_entropy, batch.mask, turns, batch.episode, a.empg_k, a.empg_k_f, a.empg_zeta)


ESTIMATORS: dict[str, Estimator] = {
    "grpo": _grpo,
    "drgrpo": _drgrpo,
    "vanilla_grpo": _vanilla_grpo,
    "gigpo": _gigpo,
    "empg": _empg,
}


def get_estimator(name: str) -> Estimator:
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise UnknownNameError(f"unknown advantage estimator {name!r}; set algorithm.adv_estimator to one of {sorted(ESTIMATORS)}") from None


def compute_advantages(batch: TurnBatch, old_entropy: torch.Tensor, a: AlgorithmConfig) -> torch.Tensor:
    """(B, T) advantages of `batch` by `a.adv_estimator` (on the CPU)."""
    estimator = get_estimator(a.adv_estimator)
    tlr = token_level_rewards(row_scores(batch, a), batch.mask)
    return estimator(batch, tlr, old_entropy, a)
