"""Expert golden transcripts for the WebShop specs (the checker's random walks rarely leave the
search page, so these cover results paging, item pages, sub-pages, options and the purchase).

    python -m arlarena_envs.webshop.golden arlarena/WebShop-v0
    python -m arlarena_envs.webshop.golden arlarena/WebShop-original-v0 '{"data_dir": "..."}'

Run after `arlarena check <id> --write-golden` (which rewrites the spec's golden list): this
appends 4 expert transcripts (test split, seeds 0-3) and keeps the checker's own entries.
"""

from __future__ import annotations

import json
import sys

from arlarena_envs.checker import _new_env, transcript_digest
from arlarena_envs.contract import GoldenFingerprint
from arlarena_envs.registry import get_spec, write_golden

MARK = "<think>expert</think>"


def expert_actions(env, seed: int) -> list[str]:
    """The expert's episode with a detour through paging and every sub-page; some tagged."""
    env.reset(seed=seed, options={"split": "test"})
    acts: list[str] = []

    def do(a: str | None) -> bool:
        if a is None or a not in (env.observation.admissible_actions or []) and not a.startswith("search["):
            return False
        acts.append(a)
        return env.step_result(a).done

    do(env.oracle_action())
    for a in ("click[next >]", "click[< prev]"):
        do(a)
    do(env.oracle_action())
    for a in ("click[description]", "click[< prev]", "click[features]", "click[< prev]", "click[reviews]", "click[< prev]"):
        do(a)
    while not do(env.oracle_action()):
        pass
    return [f"{MARK}<action>{a}</action>" if i % 3 == 1 else a for i, a in enumerate(acts)]


def main() -> None:
    env_id = sys.argv[1]
    kwargs = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    env = _new_env(env_id, kwargs)
    new = []
    for seed in range(4):
        acts = expert_actions(env, seed)
        new.append(GoldenFingerprint(split="test", seed=seed, actions=acts, sha256=transcript_digest(env, seed, "test", acts)))
    old = [g for g in get_spec(env_id).golden if not any(MARK in a for a in g.actions)]
    print(write_golden(env_id, old + new), f"{len(old)} checker + {len(new)} expert fingerprints")


if __name__ == "__main__":
    main()
