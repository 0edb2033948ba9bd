"""Register SAMPO's pieces with verl, for users who outgrow one machine (verl + Ray).

    from arlarena_baselines.verl_adapter import register_with_verl
    register_with_verl()     # actor.policy_loss.loss_mode=sampo_gspo, algorithm.adv_estimator=sampo_gigpo

verl is NOT a dependency of this package (it pins transformers < 5.11 and pulls ~1.9 GB; it
lives in the separate `verl` extra): everything here imports it lazily. The wrappers below are
pure functions with verl's calling conventions, tested with a fake registry.

* Policy loss `sampo_gspo`: verl calls `fn(old_log_prob, log_prob, advantages, response_mask,
  loss_agg_mode, config, rollout_is_weights)` and expects `(loss, metrics)`. We compute ARL-Arena
  GSPO-token (turn-level ratio, seq-mean-token-mean, empty rows dropped) with
  `config.clip_ratio_low/high` (falling back to `clip_ratio`). verl's own `gspo` divides by its
  global batch size instead; ours matches the ARL-Arena runs.
* Advantage `sampo_gigpo`: verl calls `fn(token_level_rewards, response_mask, index=uid,
  config=algorithm config, ...)` and expects `(advantages, returns)`. GiGPO also needs each
  row's discounted step return, anchor state and trajectory id, which stock verl does not pass:
  add `step_rewards`, `anchor_obs` and `traj_index` to the estimator kwargs in your trainer
  (e.g. from `non_tensor_batch["step_rewards" | "anchor_obs" | "traj_uid"]`, as verl-agent does).
"""

from __future__ import annotations

from typing import Any, Callable

from arlarena_envs.errors import MissingDependencyError

from arlarena_baselines import advantages as adv_lib
from arlarena_baselines import losses as loss_lib

LOSS_NAME = "sampo_gspo"
ADV_NAME = "sampo_gigpo"


def _get(config: Any, key: str, default: Any) -> Any:
    if config is None:
        return default
    if isinstance(config, dict):
        v = config.get(key, default)
    else:
        v = getattr(config, key, default)
    return default if v is None else v


def verl_sampo_policy_loss(
    old_log_prob, log_prob, advantages, response_mask, loss_agg_mode: str = "seq-mean-token-mean", config: Any = None,
    rollout_is_weights=None,
):
    """verl policy-loss signature -> (pg_loss, metrics): GSPO-token, turn-level ratio (see
    losses.compute_policy_loss_gspo). `loss_agg_mode` is ignored (always seq-mean-token-mean)."""
    if rollout_is_weights is not None:
        raise NotImplementedError("sampo_gspo does not apply rollout IS weights; disable rollout IS correction in verl")
    clip = float(_get(config, "clip_ratio", 0.2))
    out = loss_lib.compute_policy_loss_gspo(
        old_log_prob, log_prob, advantages, response_mask, loss_agg_mode,
        clip_ratio=clip,
        clip_ratio_low=float(_get(config, "clip_ratio_low", clip)),
        clip_ratio_high=float(_get(config, "clip_ratio_high", clip)),
    )
    metrics = {
        "actor/pg_clipfrac": out.pg_clipfrac.detach().item(),
        "actor/ppo_kl": out.ppo_kl.detach().item(),
        "actor/pg_clipfrac_lower": out.pg_clipfrac_lower.detach().item(),
    }
    return out.pg_loss, metrics


def verl_sampo_gigpo_advantage(
    token_level_rewards, response_mask, index=None, config: Any = None, step_rewards=None, anchor_obs=None,
    traj_index=None, epsilon: float = 1e-6, **_: Any,
):
    """verl estimator signature -> (advantages, returns): GiGPO (advantages.compute_gigpo_outcome_advantage).
    Reads `step_advantage_w` and `mode` from `config.gigpo` (or `config`) when present."""
    missing = [n for n, v in (("index", index), ("step_rewards", step_rewards), ("anchor_obs", anchor_obs), ("traj_index", traj_index)) if v is None]
    if missing:
        raise ValueError(
            f"sampo_gigpo needs {missing}: pass uid as index and add step_rewards (discounted step returns), "
            "anchor_obs and traj_index (traj_uid) to the advantage kwargs (see arlarena_baselines.verl_adapter)"
        )
    gcfg = _get(config, "gigpo", None)
    w = float(_get(gcfg, "step_advantage_w", _get(config, "step_advantage_w", 1.0)))
    mode = str(_get(gcfg, "mode", _get(config, "gigpo_mode", "mean_norm")))
    import torch

    sr = torch.as_tensor(step_rewards, dtype=torch.float32)
    adv = adv_lib.compute_gigpo_outcome_advantage(
        token_level_rewards, sr, response_mask, list(anchor_obs), list(index), list(traj_index), epsilon, w, mode
    )
    return adv, adv


def register_with_verl(core_algos: Any = None, loss_name: str = LOSS_NAME, adv_name: str = ADV_NAME) -> tuple[Callable, Callable]:
    """Register the loss and the estimator with verl's registries (`register_policy_loss(name)`
    and `register_adv_est(name)`, both decorators). `core_algos` defaults to
    `verl.trainer.ppo.core_algos` (imported lazily). verl refuses to re-register an estimator
    name; calling this twice is a no-op for names already registered to our functions."""
    if core_algos is None:
        try:
            from verl.trainer.ppo import core_algos  # type: ignore[no-redef]
        except ImportError as e:
            raise MissingDependencyError(
                "verl is not installed; install it in a separate environment: pip install 'arlarena-envs[verl]'"
            ) from e
    core_algos.register_policy_loss(loss_name)(verl_sampo_policy_loss)
    existing = None
    getter = getattr(core_algos, "get_adv_estimator_fn", None)
    if getter is not None:
        try:
            existing = getter(adv_name)
        except (ValueError, KeyError, NotImplementedError):
            existing = None
    if existing is None:
        core_algos.register_adv_est(adv_name)(verl_sampo_gigpo_advantage)
    return verl_sampo_policy_loss, verl_sampo_gigpo_advantage
