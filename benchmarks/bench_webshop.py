"""WebShop throughput and memory: 64 concurrent sessions in one process (round-robin).

Each session plays the expert with probability 0.5 and otherwise a random admissible action
(`search[<your query>]` becomes a query of 2-6 words from its instruction, as an LLM writes);
episodes end at purchase or 15 steps, then the session resets to the next goal. Prints steps/s
per core (steps / process CPU seconds; the loop is single-threaded), wall steps/s, and RSS.
Targets (issue 3): >= 1,000 steps/s/core; <= 300 MB RSS for 64 sessions.

    python benchmarks/bench_webshop.py [--sessions 64] [--steps 20000] [--env arlarena/WebShop-v0]
"""

from __future__ import annotations

import argparse
import random
import time

import psutil


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--env", default="arlarena/WebShop-v0")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    from arlarena_envs.registry import make

    rss_import = proc.memory_info().rss
    t0 = time.perf_counter()
    kwargs = {"data_dir": args.data_dir} if args.data_dir else {}
    envs = [make(args.env, **kwargs).unwrapped for _ in range(args.sessions)]
    build_s = time.perf_counter() - t0
    rng = random.Random(0)
    for i, e in enumerate(envs):
        e.reset(seed=i)
    rss_built = proc.memory_info().rss
    steps = episodes = wins = 0
    seeds = args.sessions
    cpu0, w0 = time.process_time(), time.perf_counter()
    while steps < args.steps:
        for e in envs:
            if rng.random() < 0.5:
                a = e.oracle_action()
            else:
                adm = e.observation.admissible_actions or []
                a = rng.choice(adm) if adm else None
                if a == "search[<your query>]":
                    words = e.observation.task.replace(",", " ").split()
                    k = rng.randint(2, min(6, len(words)))
                    start = rng.randrange(0, len(words) - k + 1)
                    a = "search[" + " ".join(words[start : start + k]) + "]"
            r = e.step_result(a or "click[back to search]")
            steps += 1
            if r.done:
                episodes += 1
                wins += r.info.won
                e.reset(seed=seeds)
                seeds += 1
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - w0
    rss = proc.memory_info().rss
    mb = 1 / 2**20
    print(f"env {args.env}: {args.sessions} sessions, {steps} steps, {episodes} episodes (won {wins})")
    print(f"build {build_s:.2f} s (catalogue + index once, shared by all sessions)")
    print(f"steps/s per core: {steps / cpu:,.0f}  (target >= 1,000: {steps / cpu / 1000:.2f}x)")
    print(f"steps/s wall:     {steps / wall:,.0f}")
    print(f"RSS: start {rss0 * mb:.0f} MB, after imports {rss_import * mb:.0f} MB, 64 sessions built {rss_built * mb:.0f} MB, after run {rss * mb:.0f} MB")
    print(f"RSS with {args.sessions} sessions: {rss * mb:.0f} MB (target <= 300 MB: {rss * mb / 300:.2f} of budget)")
    leaderboard_rows(envs[0], rng)


def leaderboard_rows(env, rng: random.Random) -> None:
    """Oracle and uniform-random rows on the test split (the spec's leaderboard protocol)."""
    n = env.n_tasks("test")
    for name in ("oracle", "random"):
        t = time.perf_counter()
        wins, score = 0, 0.0
        for k in range(n):
            env.reset(seed=k, options={"split": "test", "task_index": k})
            while True:
                if name == "oracle":
                    a = env.oracle_action()
                else:
                    a = rng.choice(env.observation.admissible_actions)
                    if a == "search[<your query>]":
                        a = f"search[{env.observation.task}]"
                r = env.step_result(a)
                if r.done:
                    break
            wins += r.info.won
            score += r.info.score
        print(f"{name:6s} on test goals 0-{n - 1}: success {wins / n:.1%}, score {100 * score / n:.1f} ({time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
