"""The expert on the original WebShop data: goals 0-499 (the paper's test split).

Plays `oracle_action()` (search the target's title, open it, click the goal's options, buy)
on arlarena/WebShop-original-v0 and prints success (native reward 1.0) and score (mean native
reward x 100), in the original reward mode and in the corrected mode, plus how many targets
the search put on the first results page.

    python benchmarks/webshop_original_expert.py [DATA_DIR] [--nouns heuristic|spacy]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from arlarena_envs.registry import make

ROOT = Path(__file__).resolve().parents[1]


def run(data_dir: str, score_mode: str, nouns: str, n: int) -> dict[str, float]:
    env = make("arlarena/WebShop-original-v0", data_dir=data_dir, score_mode=score_mode, nouns=nouns).unwrapped
    wins, total, steps, first_page = 0, 0.0, 0, 0
    t = time.perf_counter()
    for k in range(n):
        env.reset(options={"split": "test", "task_index": k})
        info = {}
        for i in range(env.protocol.max_steps):
            _, _, term, trunc, info = env.step(env.oracle_action())
            steps += 1
            if i == 0:
                first_page += f"click[{env.goal['asin'].lower()}]" in (info["admissible_actions"] or [])
            if term or trunc:
                break
        wins += bool(info["won"])
        total += info["score"]
    return {"success": wins / n, "score": 100 * total / n, "first_page": first_page / n, "steps": steps, "seconds": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir", nargs="?", default=os.environ.get("ARLARENA_WEBSHOP_DATA", str(ROOT.parent / "shared/data/webshop-1000")))
    ap.add_argument("--nouns", default="heuristic")
    ap.add_argument("--goals", type=int, default=500)
    args = ap.parse_args()
    for mode in ("original", "corrected"):
        r = run(args.data_dir, mode, args.nouns, args.goals)
        print(
            f"expert, goals 0-{args.goals - 1}, reward mode {mode:9s} nouns {args.nouns}: success {r['success']:.1%}  "
            f"score {r['score']:.1f}  target on first results page {r['first_page']:.1%}  ({r['steps']} steps, {r['seconds']:.1f} s)"
        )


if __name__ == "__main__":
    main()
