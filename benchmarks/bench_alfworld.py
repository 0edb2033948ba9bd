"""ALFWorld steps/s: our env (arlarena/ALFWorld-v0) vs the raw alfworld/textworld engine, same games.

The raw engine is what alfworld's `AlfredTWEnv.init_env` builds per game in train mode:
`textworld.start(game, EnvInfos(won, admissible_commands, facts, feedback, extras=[gamefile,
expert_plan]), wrappers=[AlfredDemangler, AlfredInfos, AlfredExpert(handcoded)])`, stepped with
plain command strings. Ours is ALFWorldEnv stepped with the same commands through the full
contract (parsing, admissible check, observation, state hash, info). Both replay the same action
lists: the expert's episode of each game, recorded once by our env (so both sides do identical
engine work). Times are CPU seconds of this process (time.process_time), so a busy shared
machine does not skew the ratio; resets and game loads are timed apart from steps.

The stock engine (TextWorld's grammar parser as shipped) is measured too; our env memoises that
parser by default (engine.install_textgen_cache: identical text, cheaper steps), so the
overhead is measured against the raw engine with the same cache, and the speedup against stock.

Then: the same episodes through `make_pool(..., backend="subprocess")` with 2 worker processes
(wall-clock steps/s of the batch; 2 envs stepped together), vs 1 env in-process (wall clock).

    python benchmarks/bench_alfworld.py [--games 6] [--repeats 3] [--pool-episodes 6] [--sweep 24]

Target: wrapper overhead <= 5% of the raw engine's step time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def record_episodes(cache: Path, n_games: int) -> list[tuple[int, str, list[str]]]:
    """(task_index, game file, expert actions) for the first n_games train games."""
    from arlarena_envs.alfworld import ALFWorldEnv

    env = ALFWorldEnv(cache_dir=cache)
    out = []
    for i in range(n_games):
        env.reset_result(seed=0, options={"task_index": i})
        actions = []
        while len(actions) < env.protocol.max_steps:
            a = env.oracle_action()
            if a is None:
                break
            actions.append(a)
            if env.step_result(a).done:
                break
        out.append((i, env.game_path, actions))
    env.close()
    return out


def bench_raw(episodes, repeats: int, fast_textgen: bool) -> dict:
    from arlarena_envs.alfworld.engine import install_textgen_cache, start_engine

    install_textgen_cache(fast_textgen)

    steps, step_cpu, reset_cpu, load_cpu = 0, 0.0, 0.0, 0.0
    for _, game, actions in episodes:
        t = time.process_time()
        env = start_engine(game, expert=True, safe_expert=False)  # alfworld's own AlfredExpert
        env.reset()
        load_cpu += time.process_time() - t  # new engine + first reset
        for _ in range(repeats):
            t = time.process_time()
            env.reset()
            reset_cpu += time.process_time() - t
            t = time.process_time()
            for a in actions:
                env.step(a)
            step_cpu += time.process_time() - t
            steps += len(actions)
        env.close()
    return {"steps": steps, "step_cpu_s": step_cpu, "reset_cpu_s": reset_cpu, "load_cpu_s": load_cpu}


def bench_ours(cache: Path, episodes, repeats: int) -> dict:
    from arlarena_envs.alfworld import ALFWorldEnv

    env = ALFWorldEnv(cache_dir=cache)
    steps, step_cpu, reset_cpu, load_cpu = 0, 0.0, 0.0, 0.0
    for i, _, actions in episodes:
        t = time.process_time()
        env.reset_result(seed=0, options={"task_index": i})
        load_cpu += time.process_time() - t  # game load into the env's engine + first reset
        for _ in range(repeats):
            t = time.process_time()
            env.reset_result(seed=0, options={"task_index": i})
            reset_cpu += time.process_time() - t
            t = time.process_time()
            for a in actions:
                env.step_result(a)
            step_cpu += time.process_time() - t
            steps += len(actions)
    env.close()
    return {"steps": steps, "step_cpu_s": step_cpu, "reset_cpu_s": reset_cpu, "load_cpu_s": load_cpu}


def bench_pool(cache: Path, episodes, n_episodes: int) -> dict:
    """Wall-clock steps/s: 1 env in-process vs 2 envs in a 2-process subprocess pool."""
    from arlarena_envs.alfworld import ALFWorldEnv
    from arlarena_envs.pools import make_pool

    eps = (episodes * ((n_episodes // len(episodes)) + 1))[:n_episodes]
    # in-process, one env, episodes one after another (resets included)
    env = ALFWorldEnv(cache_dir=cache)
    t = time.perf_counter()
    steps = 0
    for i, _, actions in eps:
        env.reset_result(seed=0, options={"task_index": i})
        for a in actions:
            env.step_result(a)
        steps += len(actions)
    single = steps / (time.perf_counter() - t)
    env.close()
    # subprocess pool: 2 envs (one per worker), 2 episodes at a time
    pool = make_pool("arlarena/ALFWorld-v0", 2, backend="subprocess", env_kwargs={"cache_dir": str(cache)}, num_workers=2)
    try:
        pool.reset([0, 0], options=[{"task_index": eps[0][0]}, {"task_index": eps[1][0]}])  # warm the workers
        t = time.perf_counter()
        steps = 0
        for k in range(0, len(eps) - 1, 2):
            pair = eps[k:k + 2]
            pool.reset([0, 0], options=[{"task_index": p[0]} for p in pair])
            for j in range(max(len(p[2]) for p in pair)):
                acts = [p[2][j] if j < len(p[2]) else None for p in pair]
                pool.step(acts)
                steps += sum(a is not None for a in acts)
        pooled = steps / (time.perf_counter() - t)
    finally:
        pool.close()
    return {"inprocess_1env_steps_per_s": single, "subprocess_2proc_steps_per_s": pooled, "speedup": pooled / single}


def expert_sweep(cache: Path, n: int) -> dict:
    """The oracle (handcoded expert) on n games of train and of eval_out_of_distribution:
    success rate and mean episode length per task type."""
    from arlarena_envs.alfworld import ALFWorldEnv

    out: dict = {}
    for split in ("train", "eval_out_of_distribution"):
        env = ALFWorldEnv(cache_dir=cache, split=split)
        rows: dict[str, list[tuple[bool, int]]] = {}
        for i in range(n):
            _, info = env.reset_result(seed=0, options={"task_index": i})
            steps, won = 0, False
            while True:
                a = env.oracle_action()
                if a is None:
                    break
                r = env.step_result(a)
                steps += 1
                if r.done:
                    won = r.info.won
                    break
            rows.setdefault(info.extra["task_name"], []).append((won, steps))
        env.close()
        out[split] = {k: {"games": len(v), "success": sum(w for w, _ in v) / len(v), "mean_steps": sum(s for _, s in v) / len(v)}
                      for k, v in sorted(rows.items())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--games", type=int, default=6, help="train games 0..N-1 (6 = one per task type)")
    ap.add_argument("--repeats", type=int, default=3, help="replays of each episode per side")
    ap.add_argument("--pool-episodes", type=int, default=6, help="episodes for the pool comparison (0: skip)")
    ap.add_argument("--sweep", type=int, default=0, help="also play the expert on N train and N OOD games")
    ap.add_argument("--cache", default=None, help="game cache (default: a temporary folder)")
    args = ap.parse_args()

    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="bench-alfworld-"))
    os.environ.setdefault("ARLARENA_CACHE", str(cache.parent))
    episodes = record_episodes(cache, args.games)
    print(f"games: {len(episodes)}, expert steps per replay: {sum(len(e[2]) for e in episodes)}")
    # the stock engine (TextWorld's grammar parser as shipped) ...
    stock = [bench_raw(episodes, args.repeats, fast_textgen=False) for _ in range(2)]
    # ... then, with our parse cache installed (the env's default), raw engine vs our env on
    # identical engine work; sides alternate so that drift in machine load hits both
    raw, ours = [], []
    for _ in range(2):
        raw.append(bench_raw(episodes, args.repeats, fast_textgen=True))
        ours.append(bench_ours(cache, episodes, args.repeats))

    def total(rows, k):
        return sum(r[k] for r in rows)

    stock_rate = total(stock, "steps") / total(stock, "step_cpu_s")
    raw_rate = total(raw, "steps") / total(raw, "step_cpu_s")
    our_rate = total(ours, "steps") / total(ours, "step_cpu_s")
    overhead = total(ours, "step_cpu_s") / total(raw, "step_cpu_s") - 1.0
    n_resets = len(episodes) * args.repeats * 2
    result = {
        "stock_engine_steps_per_cpu_s": round(stock_rate, 2),
        "raw_engine_steps_per_cpu_s": round(raw_rate, 2),
        "ours_steps_per_cpu_s": round(our_rate, 2),
        "wrapper_step_overhead": round(overhead, 4),
        "ours_vs_stock_speedup": round(our_rate / stock_rate, 3),
        "stock_reset_cpu_s_per_reset": round(total(stock, "reset_cpu_s") / n_resets, 3),
        "raw_reset_cpu_s_per_reset": round(total(raw, "reset_cpu_s") / n_resets, 3),
        "ours_reset_cpu_s_per_reset": round(total(ours, "reset_cpu_s") / n_resets, 3),
        "raw_game_load_cpu_s": round(total(raw, "load_cpu_s") / (len(episodes) * 2), 3),
        "ours_game_load_cpu_s": round(total(ours, "load_cpu_s") / (len(episodes) * 2), 3),
    }
    print(f"stock engine: {stock_rate:.1f} steps/CPU-s; with the parse cache: raw engine {raw_rate:.1f}, "
          f"ours {our_rate:.1f} steps/CPU-s")
    print(f"wrapper overhead vs the raw engine (same engine work): {overhead * 100:+.1f}% (target <= +5%); "
          f"ours vs the stock engine: {our_rate / stock_rate:.2f}x")
    print(f"reset of the same game: stock {result['stock_reset_cpu_s_per_reset']}, raw {result['raw_reset_cpu_s_per_reset']}, "
          f"ours {result['ours_reset_cpu_s_per_reset']} CPU-s; game load + first reset: raw (new engine) "
          f"{result['raw_game_load_cpu_s']}, ours (load into the env's engine) {result['ours_game_load_cpu_s']} CPU-s")
    if args.pool_episodes:
        pool = bench_pool(cache, episodes, args.pool_episodes)
        result.update({k: round(v, 2) for k, v in pool.items()})
        print(f"wall clock: 1 env in-process {pool['inprocess_1env_steps_per_s']:.1f} steps/s; "
              f"subprocess pool, 2 processes: {pool['subprocess_2proc_steps_per_s']:.1f} steps/s ({pool['speedup']:.2f}x)")
    if args.sweep:
        sweep = expert_sweep(cache, args.sweep)
        for split, rows in sweep.items():
            print(f"expert on {split}: " + ", ".join(f"{k} {v['success']:.0%} ({v['games']} games, {v['mean_steps']:.1f} steps)" for k, v in rows.items()))
        result["expert_sweep"] = sweep
    print(json.dumps(result))


if __name__ == "__main__":
    main()
