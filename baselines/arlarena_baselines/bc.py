"""Behaviour-cloning cold start: expert trajectories from the envs' oracles, formatted as
`<think>...</think><action>...</action>` responses to the rendered prompts, and SFT on them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from arlarena_envs.contract import MetricRecord
from arlarena_envs.episodes import Reply, TurnPolicy, TurnView, run_episodes, turn_major
from arlarena_envs.errors import ArlArenaError
from arlarena_envs.pools import EnvPool
from arlarena_envs.policies import wrap_tagged

from arlarena_baselines.config import BCConfig
from arlarena_baselines.logprobs import response_logprobs
from arlarena_baselines.rollout import to_chat


@dataclass
class BCExample:
    prompt: str
    response: str


def oracle_response(action: str, think_template: str = "{action}") -> str:
    """The BC target: `<think>{think}</think><action>{action}</action>`."""
    return wrap_tagged(action, think_template.format(action=action))


def oracle_policy(think_template: str = "{action}") -> TurnPolicy:
    """The episode runner's policy for behaviour cloning: the env's expert move, as a tagged
    response (None where the env has no expert move: that episode stops)."""

    def act(view: TurnView) -> list[Reply | None]:
        oracle = view.pool.oracle_actions()
        return [None if oracle[j] is None else Reply(oracle_response(oracle[j], think_template)) for j in view.active]

    return act


def collect_oracle_examples(pool: EnvPool, seeds: Sequence[int], think_template: str = "{action}") -> list[BCExample]:
    """Play the oracle on `seeds` (pool.num_envs at a time); one example per expert turn, in the
    order the turns were played (turn-major within each batch of envs)."""
    examples: list[BCExample] = []
    n = pool.num_envs
    for start in range(0, len(seeds), n):
        episodes = run_episodes(pool, oracle_policy(think_template), list(seeds[start : start + n]))
        examples += [BCExample(t.prompt or "", t.response) for t in turn_major(episodes)]
    if not examples:
        raise ArlArenaError("the env's oracle produced no actions; behaviour cloning needs env.oracle_action()")
    return examples


def encode_examples(tokenizer: Any, examples: Sequence[BCExample], max_prompt_tokens: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids with the chat template, response ids + eos) per example."""
    out = []
    for ex in examples:
        p = tokenizer(to_chat(tokenizer, ex.prompt), add_special_tokens=False)["input_ids"][-max_prompt_tokens:]
        r = tokenizer(ex.response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append((p, r))
    return out


def batches(n: int, batch_size: int, rng: Any) -> Iterator[list[int]]:
    order = rng.permutation(n)
    for s in range(0, n, batch_size):
        yield [int(i) for i in order[s : s + batch_size]]


def bc_lr(cfg: BCConfig, update: int, n_updates: int) -> float:
    """The lr of BC update `update` (0-based) of `n_updates`. constant: lr. cosine: lr·(u+1)/W for
    u < W (warmup), then lr·(r + (1 − r)·(1 + cos(π·(u − W)/(N − W − 1)))/2), r = min_lr_ratio,
    so the last update uses r·lr. Decaying the lr keeps a late loss spike from undoing what BC
    learned (a tiny model's action loss can fall back to the uniform plateau at a constant lr)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    w = min(cfg.warmup_updates, n_updates)
    if update < w:
        return cfg.lr * (update + 1) / w
    span = max(1, n_updates - w - 1)
    progress = min(1.0, (update - w) / span)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def behaviour_clone(
    model: Any,
    encoded: Sequence[tuple[list[int], list[int]]],
    cfg: BCConfig,
    rng: Any,
    pad_id: int,
    device: Any,
    grad_clip: float,
    log: Callable[[MetricRecord], None],
    progress: Any = None,
) -> None:
    """SFT of `model` on (prompt ids, response ids) pairs: `cfg.epochs` shuffled passes in
    batches of `cfg.batch_size` (stopping after `cfg.max_updates` updates when set), AdamW at
    `bc_lr` (cfg.lr, or its warmup + cosine schedule), the response NLL
    token-mean: −Σ m·log π / Σ m,   seq-mean-token-sum: −Σ m·log π / b (a short response's
    decisive token is not diluted). Logs a `phase="bc"` MetricRecord every 10 updates."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    model.train()
    n_updates = cfg.epochs * math.ceil(len(encoded) / cfg.batch_size)
    if cfg.max_updates is not None:
        n_updates = min(n_updates, cfg.max_updates)
    step = 0
    for _epoch in range(cfg.epochs):
        for idx in batches(len(encoded), cfg.batch_size, rng):
            if step >= n_updates:
                return
            rows = [encoded[i] for i in idx]
            logp, _ = response_logprobs(model, rows, max(len(r) for _, r in rows), pad_id, device, False)
            mask = torch.zeros_like(logp)
            for i, (_, r) in enumerate(rows):
                mask[i, : len(r)] = 1
            if cfg.loss_agg_mode == "token-mean":
                loss = -(logp * mask).sum() / mask.sum()
            else:
                loss = -(logp * mask).sum() / len(rows)
            lr = bc_lr(cfg, step, n_updates)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad()
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            step += 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{loss.item():.3f}")
            if step % 10 == 0 or step == n_updates:
                log(MetricRecord(step=step, phase="bc", loss=float(loss.item()), grad_norm=float(gn), lr=lr))
