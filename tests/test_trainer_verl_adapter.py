"""The verl adapter against a fake registry (verl itself is not installed in CI)."""

from __future__ import annotations

import math
import types

import pytest
import torch

from arlarena_baselines import verl_adapter as V
from arlarena_baselines.advantages import compute_gigpo_outcome_advantage
from arlarena_baselines.losses import compute_policy_loss_gspo


def fake_core_algos():
    losses, ests = {}, {}

    def register_policy_loss(name):
        def deco(fn):
            losses[name] = fn  # verl silently overwrites
            return fn
        return deco

    def register_adv_est(name):
        def deco(fn):
            if name in ests:
                raise ValueError(f"adv estimator {name} already registered")
            ests[name] = fn
            return fn
        return deco

    def get_adv_estimator_fn(name):
        if name not in ests:
            raise ValueError(f"unknown {name}")
        return ests[name]

    return types.SimpleNamespace(register_policy_loss=register_policy_loss, register_adv_est=register_adv_est,
                                 get_adv_estimator_fn=get_adv_estimator_fn, losses=losses, ests=ests)


def test_register_twice_is_idempotent():
    core = fake_core_algos()
    V.register_with_verl(core)
    V.register_with_verl(core)
    assert core.losses["sampo_gspo"] is V.verl_sampo_policy_loss
    assert core.ests["sampo_gigpo"] is V.verl_sampo_gigpo_advantage


def test_policy_loss_matches_gspo_and_reads_config():
    logp = torch.tensor([[0.005, 0.005], [-0.1, 0.0]])
    old = torch.zeros_like(logp)
    adv = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    cfg = types.SimpleNamespace(clip_ratio=0.2, clip_ratio_low=3e-3, clip_ratio_high=4e-3)
    loss, metrics = V.verl_sampo_policy_loss(old, logp, adv, mask, "token-mean", cfg)
    ref = compute_policy_loss_gspo(old, logp, adv, mask, clip_ratio_low=3e-3, clip_ratio_high=4e-3)
    assert loss.item() == pytest.approx(ref.pg_loss.item())
    assert set(metrics) == {"actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"}
    assert math.isfinite(metrics["actor/ppo_kl"])
    with pytest.raises(NotImplementedError):
        V.verl_sampo_policy_loss(old, logp, adv, mask, "token-mean", cfg, rollout_is_weights=torch.ones_like(logp))


def test_gigpo_estimator_matches_and_needs_extra_kwargs():
    r = torch.tensor([[0.0, 10.0], [0.0, 10.0], [0.0, 0.0]])
    m = torch.ones(3, 2)
    cfg = {"gigpo": {"step_advantage_w": 1.0, "mode": "mean_std_norm"}}
    kw = dict(step_rewards=[9.5, 10.0, 0.0], anchor_obs=["a", "b", "a"], traj_index=[0, 0, 1])
    adv, ret = V.verl_sampo_gigpo_advantage(r, m, index=["g", "g", "g"], config=cfg, **kw)
    ref = compute_gigpo_outcome_advantage(r, torch.tensor([9.5, 10.0, 0.0]), m, ["a", "b", "a"], ["g"] * 3, [0, 0, 1], mode="mean_std_norm")
    assert torch.equal(adv, ret) and torch.allclose(adv, ref)
    with pytest.raises(ValueError, match="step_rewards"):
        V.verl_sampo_gigpo_advantage(r, m, index=["g"] * 3, config=cfg)


def test_missing_verl_gives_install_hint():
    try:
        import verl  # noqa: F401
    except ImportError:
        from arlarena_envs.errors import MissingDependencyError

        with pytest.raises(MissingDependencyError, match="verl"):
            V.register_with_verl()
    else:  # pragma: no cover - only where verl is installed
        V.register_with_verl()
