"""From verl's trajectory batch to SAMPO's turn rows, and the SAMPO pieces of verl's update.

`turn_rows(data, ...)` takes the `DataProto` verl's agent-loop manager returns (one row per
trajectory, each carrying its `EpisodeRecord`) and builds the batch verl's actor consumes, one
row per turn, the prompt being the env template rendered for that turn:

  batch:      prompts (left-padded to prompt_length), responses / response_mask (right-padded to
              response_length), input_ids, attention_mask, position_ids, rollout_log_probs (when
              the server returned them), token_level_scores = token_level_rewards (the row score
              s_i = R_episode − c·[turn invalid] on the last response token, as our trainer)
  non-tensor: uid (the GRPO group: the trajectories of one prompt), traj_uid (the trajectory),
              anchor_obs (the turn's state_hash: GiGPO anchors), step_rewards (γ-discounted step
              returns minus the invalid penalty: GiGPO's step term), turn, parse_status,
              episode_reward (native), won

Row scores, step returns and advantages come from the same functions as our own trainer
(`arlarena_baselines.estimators` over a `TurnBatch`), so both trainers score a batch alike.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from arlarena_envs.contract import EpisodeRecord
from arlarena_envs.errors import ConfigError

from arlarena_baselines import advantages as adv_lib
from arlarena_baselines.batch import TurnBatch
from arlarena_baselines.config import AlgorithmConfig
from arlarena_baselines.estimators import penalty_coef, row_scores, token_level_rewards
from arlarena_baselines.filtering import select_groups
from arlarena_baselines.verl.agent_loop import AGENT_NAME, EPISODE_KEY


def task_rows(env_id: str, seeds: Sequence[int], split: str | None = None, data_source: str | None = None) -> list[dict]:
    """Dataset rows for verl (write them as parquet): one per task seed. The prompt is a
    placeholder (the agent loop renders the env's own prompt every turn); `agent_name` routes the
    row to our agent loop; `extra_info.seed` picks the task."""
    return [
        {
            "data_source": data_source or env_id,
            "prompt": [{"role": "user", "content": f"{env_id} task seed {int(s)}"}],
            "agent_name": AGENT_NAME,
            "ability": "agent",
            "reward_model": {"style": "env", "ground_truth": ""},
            "extra_info": {"index": i, "seed": int(s), "split": split, "env_id": env_id},
        }
        for i, s in enumerate(seeds)
    ]


def episodes_of(data: Any) -> tuple[list[EpisodeRecord], list[str]]:
    """The EpisodeRecords of a trajectory batch and their group uids (verl's `uid`, one per
    prompt; without one, the episode's seed). Group and episode ids are renumbered 0.. in
    batch order (the EpisodeRecord ints our estimators group by)."""
    nt = data.non_tensor_batch
    if EPISODE_KEY not in nt:
        raise ConfigError(f"the batch has no {EPISODE_KEY!r}: was it generated with agent_name={AGENT_NAME!r}?")
    uids = [str(u) for u in nt["uid"]] if "uid" in nt else [f"seed-{e['seed']}" for e in nt[EPISODE_KEY]]
    group_of: dict[str, int] = {}
    episodes = []
    for j, (raw, uid) in enumerate(zip(nt[EPISODE_KEY], uids)):
        ep = EpisodeRecord.model_validate(raw)
        ep.group = group_of.setdefault(uid, len(group_of))
        ep.episode = j
        episodes.append(ep)
    return episodes, uids


def filter_episode_groups(episodes: Sequence[EpisodeRecord], needed_groups: int, last_try: bool) -> list[EpisodeRecord]:
    """Dynamic filtering (ARL-Arena DAPO, `filtering.select_groups`): keep the groups whose
    episode rewards (before invalid penalties) differ; the last try fills up with uniform ones."""
    order: list[int] = []
    members: dict[int, list[EpisodeRecord]] = {}
    for e in episodes:
        if e.group not in members:
            order.append(e.group)
            members[e.group] = []
        members[e.group].append(e)
    keep = select_groups([[e.native_reward for e in members[g]] for g in order], needed_groups, last_try)
    return [e for i in keep for e in members[order[i]]]


def _left_pad(ids: list[int], width: int, pad: int) -> tuple[list[int], list[int]]:
    return [pad] * (width - len(ids)) + ids, [0] * (width - len(ids)) + [1] * len(ids)


def _right_pad(ids: list[int], width: int, pad: int) -> tuple[list[int], list[int]]:
    return ids + [pad] * (width - len(ids)), [1] * len(ids) + [0] * (width - len(ids))


def turn_rows(episodes: Sequence[EpisodeRecord], uids: Sequence[str], *, pad_token_id: int, prompt_length: int,
              response_length: int, algorithm: AlgorithmConfig) -> Any:
    """One verl row per turn of `episodes` (see the module docstring); returns a DataProto."""
    from verl.protocol import DataProto
    from verl.utils.model import compute_position_id_with_mask

    tb = TurnBatch.from_episodes(episodes)
    uid_of = {e.episode: uid for e, uid in zip(episodes, uids)}
    rows_p, rows_r, am_p, am_r, lps = [], [], [], [], []
    have_lp = all(t.logprobs is not None for t in tb.turns)
    for t in tb.turns:
        p, r = list(t.prompt_ids or []), list(t.response_ids or [])
        if len(p) > prompt_length or len(r) > response_length:
            raise ConfigError(f"turn {t.turn}: {len(p)} prompt / {len(r)} response tokens exceed {prompt_length} / "
                              f"{response_length} (rollout.prompt_length / response_length)")
        pp, pm = _left_pad(p, prompt_length, pad_token_id)
        rr, rm = _right_pad(r, response_length, pad_token_id)
        rows_p.append(pp), rows_r.append(rr), am_p.append(pm), am_r.append(rm)
        if have_lp:
            lps.append(list(t.logprobs or []) + [0.0] * (response_length - len(r)))
    prompts, responses = torch.tensor(rows_p), torch.tensor(rows_r)
    response_mask = torch.tensor(am_r)
    attention_mask = torch.cat([torch.tensor(am_p), response_mask], dim=1)
    scores = row_scores(tb, algorithm)
    tlr = token_level_rewards(scores, response_mask.float())
    batch = {
        "prompts": prompts,
        "responses": responses,
        "response_mask": response_mask,
        "input_ids": torch.cat([prompts, responses], dim=1),
        "attention_mask": attention_mask,
        "position_ids": compute_position_id_with_mask(attention_mask),
        "token_level_scores": tlr,
        "token_level_rewards": tlr.clone(),
    }
    if have_lp:
        batch["rollout_log_probs"] = torch.tensor(lps, dtype=torch.float32)
    c = penalty_coef(algorithm)
    step = adv_lib.compute_step_discounted_returns([t.native_reward for t in tb.turns], tb.episode, algorithm.gamma)
    step = step - torch.tensor([c * (not t.valid_action) for t in tb.turns], dtype=torch.float32)
    non_tensor = {
        "uid": np.array([uid_of[e] for e in tb.episode], dtype=object),
        "traj_uid": np.array([f"{uid_of[e]}/{e}" for e in tb.episode], dtype=object),
        "anchor_obs": np.array([t.state_hash for t in tb.turns], dtype=object),
        "step_rewards": step.numpy().astype(np.float32),
        "turn": np.array([t.turn for t in tb.turns], dtype=np.int64),
        "parse_status": np.array([t.parse_status.value for t in tb.turns], dtype=object),
        "episode_reward": np.array(tb.episode_native_reward, dtype=np.float32),
        "won": np.array([e.won for e in episodes for _ in e.turns], dtype=bool),
    }
    return DataProto.from_dict(tensors=batch, non_tensors=non_tensor, meta_info={"arlarena_turn_rows": True})


def estimator_kwargs(data: Any) -> dict[str, Any]:
    """What GiGPO needs beyond verl's stock estimator arguments, from the turn rows (verl's
    `compute_advantage` passes only token_level_rewards, response_mask, index and config)."""
    nt = data.non_tensor_batch
    return {"index": nt["uid"], "traj_index": nt["traj_uid"], "anchor_obs": nt["anchor_obs"],
            "step_rewards": torch.as_tensor(nt["step_rewards"], dtype=torch.float32)}


def compute_advantages(data: Any, adv_estimator: str, config: Any) -> Any:
    """Advantages of the turn rows with the estimator registered in verl under `adv_estimator`
    (found through verl's registry), given the GiGPO fields; writes `advantages` and `returns`."""
    from verl.trainer.ppo import core_algos

    fn = core_algos.get_adv_estimator_fn(adv_estimator)
    kwargs = {"token_level_rewards": data.batch["token_level_rewards"], "response_mask": data.batch["response_mask"]}
    extra = estimator_kwargs(data)
    if adv_estimator == "grpo":  # verl's own GRPO: groups by uid over the turn rows (cross-step statistics)
        cfg = config if isinstance(config, dict) else {}
        kwargs.update(index=extra["index"], norm_adv_by_std_in_grpo=bool(cfg.get("norm_adv_by_std_in_grpo", True)))
    else:
        kwargs.update(extra, config=config)
    advantages, returns = fn(**kwargs)
    data.batch["advantages"], data.batch["returns"] = advantages, returns
    return data
