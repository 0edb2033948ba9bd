"""Behaviour-cloning cold start: expert trajectories from the envs' oracles, formatted as
`<think>...</think><action>...</action>` responses to the rendered prompts, and SFT on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from arlarena_envs.errors import ArlArenaError
from arlarena_envs.pools import EnvPool
from arlarena_envs.policies import wrap_tagged


@dataclass
class BCExample:
    prompt: str
    response: str


def oracle_response(action: str, think_template: str = "{action}") -> str:
    """The BC target: `<think>{think}</think><action>{action}</action>`."""
    return wrap_tagged(action, think_template.format(action=action))


def collect_oracle_examples(pool: EnvPool, seeds: Sequence[int], think_template: str = "{action}") -> list[BCExample]:
    """Play the oracle on `seeds` (pool.num_envs at a time); one example per expert turn."""
    examples: list[BCExample] = []
    n = pool.num_envs
    for start in range(0, len(seeds), n):
        chunk = list(seeds[start : start + n])
        live = len(chunk)
        chunk += [chunk[-1]] * (n - live)  # pad the last chunk; padded envs are never stepped
        pool.reset(chunk)
        active = [j < live for j in range(n)]
        while any(active):
            prompts = pool.prompts()
            oracle = pool.oracle_actions()
            actions: list[str | None] = [None] * n
            for j in range(n):
                if active[j]:
                    if oracle[j] is None:
                        active[j] = False
                        continue
                    actions[j] = oracle_response(oracle[j], think_template)
                    examples.append(BCExample(prompts[j], actions[j]))
            if not any(a is not None for a in actions):
                break
            for j, r in enumerate(pool.step(actions)):
                if r is not None and r.done:
                    active[j] = False
    if not examples:
        raise ArlArenaError("the env's oracle produced no actions; behaviour cloning needs env.oracle_action()")
    return examples


def encode_examples(tokenizer: Any, examples: Sequence[BCExample], max_prompt_tokens: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids with the chat template, response ids + eos) per example."""
    from arlarena_baselines.rollout import to_chat

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
