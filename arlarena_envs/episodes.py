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

`run_episodes_async` plays the same episodes for engines with continuous batching: each env
steps as soon as its own reply arrives (an `AsyncEnvPool` and a policy returning Futures).

A turn's penalty is `pool.protocol.penalty_for(parse_status)`, the rule the env applied, and
its native reward is `reward + penalty`.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from arlarena_envs.contract import EpisodeRecord, Observation, StepResult, TurnRecord
from arlarena_envs.errors import ConfigError
from arlarena_envs.pools import EnvPool
from arlarena_envs.pools.async_pool import AsyncEnvPool

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
    n, live = pool.num_envs, _check_seeds(pool, seeds, groups)
    padded = list(seeds) + [seeds[-1]] * (n - live)
    opts = None if options is None else list(options) + [None] * (n - len(options))
    firsts = pool.reset(padded, opts)
    obs = [o for o, _ in firsts]
    episodes = [_new_episode(pool, j, seeds[j], opts[j] if opts else None, split, firsts[j], groups, first_episode) for j in range(live)]
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
            _record(episodes[j], pool, obs[j], prompts[j] if keep_prompts else None, rep, r)
            obs[j] = r.observation
            if r.done:
                active[j] = False
        turn += 1
    return episodes


def _check_seeds(pool: EnvPool, seeds: Sequence[int | None], groups: Sequence[int] | None) -> int:
    n, live = pool.num_envs, len(seeds)
    if not 1 <= live <= n:
        raise ConfigError(f"run_episodes got {live} seeds for a pool of {n} envs; give 1..{n}")
    if groups is not None and len(groups) != live:
        raise ConfigError(f"groups has {len(groups)} entries for {live} seeds")
    return live


def _new_episode(pool: EnvPool, j: int, seed: int | None, opt: dict[str, Any] | None, split: str | None,
                 first: tuple[Observation, Any], groups: Sequence[int] | None, first_episode: int) -> EpisodeRecord:
    obs, info = first
    return EpisodeRecord(
        env_id=pool.env_id,
        split=(opt or {}).get("split", split) if opt is not None else split,
        seed=seed,
        task_index=(opt or {}).get("task_index") if opt is not None else None,
        task=obs.task,
        group=groups[j] if groups is not None else j,
        episode=first_episode + j,
        won=info.won,
        score=info.score,
    )


def _record(episode: EpisodeRecord, pool: EnvPool, obs: Observation, prompt: str | None, rep: Reply, r: StepResult) -> None:
    """Append the turn (obs, rep) -> r to `episode` and update its outcome."""
    info = r.info
    penalty = pool.protocol.penalty_for(info.parse_status)
    episode.turns.append(
        TurnRecord(
            turn=obs.step,
            observation=obs.text,
            state_hash=obs.state_hash,
            prompt=prompt,
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
    episode.won, episode.score = bool(info.won), float(info.score)
    if r.done and r.truncated:
        episode.truncated_reason = info.extra.get("truncated_reason")


@dataclass
class TurnRequest:
    """What an asynchronous policy is asked for one env: its index in the pool (= the episode's
    position in `seeds`), the episode's turn, the observation and the prompt."""

    index: int
    turn: int
    observation: Observation
    prompt: str


AsyncTurnPolicy = Callable[[TurnRequest], "cf.Future[Reply | None]"]


def threaded_policy(answer: Callable[[TurnRequest], Reply | None], max_workers: int = 64) -> AsyncTurnPolicy:
    """An `AsyncTurnPolicy` from a blocking per-request function (e.g. an HTTP call to an
    inference server with continuous batching), run in `max_workers` threads."""
    executor = cf.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="arlarena-policy")
    return lambda req: executor.submit(answer, req)


def run_episodes_async(
    pool: AsyncEnvPool,
    policy: AsyncTurnPolicy,
    seeds: Sequence[int | None],
    *,
    options: Sequence[dict[str, Any] | None] | None = None,
    groups: Sequence[int] | None = None,
    first_episode: int = 0,
    split: str | None = None,
    keep_prompts: bool = True,
) -> list[EpisodeRecord]:
    """`run_episodes` for engines with continuous batching: every env goes at its own pace.

    Env j is reset with `seeds[j]`; as soon as its reset or step finishes its next prompt goes
    to `policy` (which returns a Future of the Reply), and as soon as that reply arrives the env
    steps. No env waits for another env or for another env's reply. The records are the same
    as `run_episodes` gives for the same seeds and per-env replies (turns in order within each
    episode); envs beyond `len(seeds)` are left alone."""
    if not isinstance(pool, AsyncEnvPool):
        raise ConfigError(f"run_episodes_async needs an AsyncEnvPool (pools.async_pool.AsyncEnvPool(pool)), got {type(pool).__name__}")
    live = _check_seeds(pool, seeds, groups)
    opts = [None] * live if options is None else list(options) + [None] * (live - len(options))
    episodes: list[EpisodeRecord | None] = [None] * live
    obs: list[Observation | None] = [None] * live
    prompts: list[str] = [""] * live
    replies: list[Reply | None] = [None] * live
    waiting: dict[cf.Future, tuple[str, int]] = {}
    for j in range(live):
        waiting[pool.reset_async(j, seeds[j], opts[j])] = ("env", j)

    def ask(j: int, prompt: str | None) -> None:
        prompts[j] = pool.prompt_env(j) if prompt is None else prompt
        o = obs[j]
        assert o is not None
        waiting[policy(TurnRequest(j, len(episodes[j].turns), o, prompts[j]))] = ("policy", j)  # type: ignore[union-attr]

    try:
        while waiting:
            done, _ = cf.wait(list(waiting), return_when=cf.FIRST_COMPLETED)
            for f in done:
                kind, j = waiting.pop(f)
                if kind == "policy":
                    rep = f.result()
                    if rep is None:
                        episodes[j].truncated_reason = POLICY_STOPPED  # type: ignore[union-attr]
                        continue
                    replies[j] = rep
                    waiting[pool.step_async(j, rep.text)] = ("env", j)
                    continue
                c = f.result()
                if c.error is not None:
                    raise c.error
                if c.op == "reset":
                    first = c.result
                    episodes[j] = _new_episode(pool, j, seeds[j], opts[j], split, first, groups, first_episode)
                    obs[j] = first[0]
                    ask(j, c.prompt)
                    continue
                r = c.result
                rep = replies[j]
                assert rep is not None and obs[j] is not None
                _record(episodes[j], pool, obs[j], prompts[j] if keep_prompts else None, rep, r)  # type: ignore[arg-type]
                obs[j] = r.observation
                if not r.done:
                    ask(j, c.prompt)
    finally:
        for f in waiting:  # on an error: nothing new starts; calls already running finish
            f.cancel()
        if waiting:
            cf.wait([f for f, (kind, _) in waiting.items() if kind == "env"])
    return [e for e in episodes if e is not None]


def turn_major(episodes: Sequence[EpisodeRecord]) -> list[TurnRecord]:
    """Every turn of `episodes`, turn 0 of each episode first, then turn 1, ... (the order in
    which a batched run produced them)."""
    longest = max((len(e.turns) for e in episodes), default=0)
    return [e.turns[k] for k in range(longest) for e in episodes if k < len(e.turns)]


__all__ = [
    "POLICY_STOPPED", "AsyncTurnPolicy", "Reply", "TurnPolicy", "TurnRequest", "TurnView",
    "run_episodes", "run_episodes_async", "threaded_policy", "turn_major",
]
