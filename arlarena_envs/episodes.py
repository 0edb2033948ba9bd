"""The episode runner: play every env of a pool to the end of its episode, one `TurnRecord`
per turn.

    episodes = run_episodes(pool, policy, seeds=[7, 7, 8, 8], groups=[0, 0, 1, 1])

The one loop behind training rollouts, behaviour cloning, the leaderboard and the checker's
scripted walks. Each turn the runner takes every env's prompt from the pool (`env.prompt()`:
the spec's template, so the prompt after an invalid action is the env's, never a copy), asks
the policy for the replies of all active envs in ONE call (a model engine batches them; the
order of those calls is what fixes its random draws), steps the pool and records the turn. An
env stays active until its episode ends (terminated, truncated, a lost worker) or the policy
answers None for it (e.g. an oracle with no move).

A turn's penalty is `pool.protocol.penalty_for(parse_status)`, the rule the env applied, and
its native reward is `reward + penalty`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from arlarena_envs.contract import EpisodeRecord, Observation, TurnRecord
from arlarena_envs.errors import ConfigError
from arlarena_envs.pools import EnvPool

POLICY_STOPPED = "policy_stopped"  # EpisodeRecord.truncated_reason when the policy had no action


@dataclass
class Reply:
    """A policy's answer for one env: the response text, and the token ids (and the engine's
    per-token log-probs) when a model produced it."""

    text: str
    prompt_ids: list[int] | None = None
    response_ids: list[int] | None = None
    logprobs: list[float] | None = None


@dataclass
class TurnView:
    """What a policy is shown on one turn: the active envs (indices into the pool), their
    observations and their prompts, in the same order."""

    pool: EnvPool
    turn: int
    active: list[int]
    observations: list[Observation]
    prompts: list[str]


TurnPolicy = Callable[[TurnView], Sequence[Reply | None]]


def run_episodes(
    pool: EnvPool,
    policy: TurnPolicy,
    seeds: Sequence[int | None],
    *,
    options: Sequence[dict[str, Any] | None] | None = None,
    groups: Sequence[int] | None = None,
    first_episode: int = 0,
    split: str | None = None,
    keep_prompts: bool = True,
) -> list[EpisodeRecord]:
    """Reset env j of the pool with `seeds[j]` and play until every episode ends.

    Fewer seeds than envs is fine: the remaining envs are reset with the last seed (a pool
    resets all its envs) but never stepped. `groups[j]` is episode j's GRPO group (default
    j); episode ids are `first_episode + j`. Returns one EpisodeRecord per seed, in order."""
    n, live = pool.num_envs, len(seeds)
    if not 1 <= live <= n:
        raise ConfigError(f"run_episodes got {live} seeds for a pool of {n} envs; give 1..{n}")
    if groups is not None and len(groups) != live:
        raise ConfigError(f"groups has {len(groups)} entries for {live} seeds")
    padded = list(seeds) + [seeds[-1]] * (n - live)
    opts = None if options is None else list(options) + [None] * (n - len(options))
    firsts = pool.reset(padded, opts)
    obs = [o for o, _ in firsts]
    episodes = [
        EpisodeRecord(
            env_id=pool.env_id,
            split=(opts[j] or {}).get("split", split) if opts else split,
            seed=seeds[j],
            task_index=(opts[j] or {}).get("task_index") if opts else None,
            task=obs[j].task,
            group=groups[j] if groups is not None else j,
            episode=first_episode + j,
            won=firsts[j][1].won,
            score=firsts[j][1].score,
        )
        for j in range(live)
    ]
    active = [j < live for j in range(n)]
    turn = 0
    while any(active):
        prompts = pool.prompts()
        idx = [j for j in range(n) if active[j]]
        replies = list(policy(TurnView(pool, turn, idx, [obs[j] for j in idx], [prompts[j] for j in idx])))
        if len(replies) != len(idx):
            raise ConfigError(f"the policy answered {len(replies)} envs of {len(idx)} on turn {turn}")
        actions: list[str | None] = [None] * n
        for j, rep in zip(idx, replies):
            if rep is None:
                active[j] = False
                episodes[j].truncated_reason = POLICY_STOPPED
            else:
                actions[j] = rep.text
        if all(a is None for a in actions):
            break
        results = pool.step(actions)
        for j, rep in zip(idx, replies):
            if rep is None:
                continue
            r = results[j]
            if r is None:
                raise ConfigError(f"pool {type(pool).__name__} returned no result for stepped env {j}")
            info = r.info
            penalty = pool.protocol.penalty_for(info.parse_status)
            episodes[j].turns.append(
                TurnRecord(
                    turn=obs[j].step,
                    observation=obs[j].text,
                    state_hash=obs[j].state_hash,
                    prompt=prompts[j] if keep_prompts else None,
                    response=rep.text,
                    action=info.action,
                    parse_status=info.parse_status,
                    format_valid=info.format_valid,
                    reward=float(r.reward),
                    native_reward=float(r.reward) + penalty,
                    penalty=penalty,
                    terminated=r.terminated,
                    truncated=r.truncated,
                    won=info.won,
                    score=info.score,
                    info_extra=info.extra,
                    prompt_ids=rep.prompt_ids,
                    response_ids=rep.response_ids,
                    logprobs=rep.logprobs,
                )
            )
            obs[j] = r.observation
            episodes[j].won, episodes[j].score = bool(info.won), float(info.score)
            if r.done:
                active[j] = False
                if r.truncated:
                    episodes[j].truncated_reason = info.extra.get("truncated_reason")
        turn += 1
    return episodes


def turn_major(episodes: Sequence[EpisodeRecord]) -> list[TurnRecord]:
    """Every turn of `episodes`, turn 0 of each episode first, then turn 1, ... (the order in
    which a batched run produced them)."""
    longest = max((len(e.turns) for e in episodes), default=0)
    return [e.turns[k] for k in range(longest) for e in episodes if k < len(e.turns)]


__all__ = ["POLICY_STOPPED", "Reply", "TurnPolicy", "TurnView", "run_episodes", "turn_major"]
