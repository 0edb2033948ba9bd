"""The learning gain: BC-only vs BC + RL on held-out Sokoban levels, over seeds (CPU).

For each seed s: behaviour cloning with the preset's BC settings (model, tokenizer and BC data
order seeded by s) gives the "BC-only" policy; each RL algorithm then starts from that same
BC policy (the preset's budget, the algorithm section of its own preset; `sampo` = the preset's
own algorithm) and is evaluated on the same held-out levels (the first `eval_episodes` seeds of
the eval split, the preset's eval sampling). Uniformly random moves on those levels are the
floor. Prints per-seed figures, mean ± SE over seeds, and the paired gain (RL - BC-only on
the same seed) mean ± SE with its ratio gain / SE; writes summary.json.

`--shared-bc`: one BC policy (trained with seed `--bc-seed`) for every seed; each seed's RL run
starts from it and BC-only is that policy evaluated with the seed's eval sampling (so the seeds
vary the RL run and the eval sampling, not the BC run). The BC run is reused when its
ref_policy exists.

A run whose result.json already exists is reused, so seeds can run in separate processes
(`--seeds 0 1 2` and `--seeds 3 4` into the same --out) and a last call with every seed
only aggregates.

    python benchmarks/bench_trainer.py --seeds 0 1 2 3 4                 # the gain (preset sokoban_gain)
    python benchmarks/bench_trainer.py --seeds 0 --algos sampo grpo --set trainer.total_steps=5
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shlex
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from arlarena_baselines.config import apply_overrides, load_raw, validate_config
from arlarena_baselines.train import run

GAIN_PRESET = "sokoban_gain"


def mean_se(xs: list[float]) -> tuple[float, float]:
    """mean and standard error (sample std, ddof 1, / sqrt(n)); SE is nan for one value."""
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    return m, math.sqrt(var / len(xs))


def random_success(cfg: dict, policy_seed: int) -> float:
    """Uniformly random moves on the same eval levels and env settings as the trainer's eval."""
    from arlarena_envs.policies import RandomPolicy
    from arlarena_envs.registry import make

    env_cfg = cfg["env"]
    kwargs = dict(env_cfg.get("env_kwargs") or {})
    if env_cfg.get("max_steps") is not None:
        kwargs["max_steps"] = env_cfg["max_steps"]
    env = make(env_cfg.get("env_id", "arlarena/Sokoban-v0"), split=env_cfg.get("eval_split", "eval"), **kwargs).unwrapped
    policy = RandomPolicy(seed=policy_seed)
    won = 0
    n = cfg["trainer"]["eval_episodes"]
    for i in range(n):
        obs, _ = env.reset_result(seed=i)
        while True:
            r = env.step_result(policy.act(obs))
            obs = r.observation
            if r.done:
                won += r.info.won
                break
    return won / n


def held_out_text(cfg: dict) -> str:
    """What the evaluation plays: episode i plays level i mod (the eval split's size)."""
    from arlarena_envs.registry import get_spec

    env_cfg = cfg["env"]
    spec = get_spec(env_cfg.get("env_id", "arlarena/Sokoban-v0"))
    split = spec.splits[env_cfg.get("eval_split", "eval")]
    n, levels = cfg["trainer"]["eval_episodes"], split.stop - split.start
    if n <= levels:
        return f"the first {n} levels of the {spec.id} eval split (never trained on)"
    return f"{n} episodes on the {levels} levels of the {spec.id} eval split (never trained on; each level {n / levels:g} times)"


def seeded(base: dict, seed: int) -> dict:
    cfg = json.loads(json.dumps(base))
    cfg["trainer"]["seed"] = seed
    cfg["env"]["seed"] = seed
    cfg["model"]["seed"] = seed
    return cfg


def _result(run_dir: Path) -> dict | None:
    f = run_dir / "result.json"
    return json.loads(f.read_text()) if f.exists() else None


def bc_policy(base: dict, seed: int, out: Path) -> tuple[Path, float, float]:
    """(BC run dir, its eval success, wall s): BC only (no RL step), reused when present."""
    run_dir = out / f"s{seed}" / "bc"
    done = _result(run_dir)
    if done is None or not (run_dir / "ref_policy").exists():
        cfg = seeded(base, seed)
        cfg["trainer"]["total_steps"] = 0
        done_res = run(validate_config(cfg), run_dir=run_dir)
        done = {"final_eval_success": done_res.final_eval_success, "wall_time_s": done_res.wall_time_s}
    return run_dir, float(done["final_eval_success"]), float(done["wall_time_s"])


def shared_bc_policy(base: dict, bc_seed: int, out: Path) -> Path:
    """The BC run dir shared by every seed (`--shared-bc`), trained once; reused when its
    ref_policy exists (its own evaluation is not used: each seed evaluates it)."""
    run_dir = out / f"bc_shared_s{bc_seed}"
    if not (run_dir / "ref_policy").exists():
        cfg = seeded(base, bc_seed)
        cfg["trainer"]["total_steps"] = 0
        run(validate_config(cfg), run_dir=run_dir)
    return run_dir


def rl_config(base: dict, seed: int, bc_dir: Path, algo: str, preset: str) -> dict:
    """The preset's budget from the BC policy of `seed`; `algo` = another preset's algorithm section."""
    cfg = seeded(base, seed)
    cfg["model"] = {"path": str(bc_dir / "ref_policy"), "dtype": "float32", "seed": seed}
    cfg["bc"]["enable"] = False
    cfg["trainer"]["eval_at_start"] = False
    if algo != preset_algo_name(base):
        cfg["algorithm"] = load_raw(algo)["algorithm"]
    return cfg


def preset_algo_name(base: dict) -> str:
    return str(base.get("algorithm", {}).get("name", "sampo"))


def rl_run(base: dict, seed: int, bc_dir: Path, algo: str, out: Path, preset: str, tag: str = "",
           total_steps: int | None = None) -> tuple[Path, float, float]:
    """(run dir, held-out success after the last step, wall s) of `algo` from the BC policy."""
    run_dir = out / f"s{seed}" / f"{algo}{tag}"
    done = _result(run_dir)
    if done is None:
        cfg = rl_config(base, seed, bc_dir, algo, preset)
        if total_steps is not None:
            cfg["trainer"]["total_steps"] = total_steps
        res = run(validate_config(cfg), run_dir=run_dir)
        done = {"final_eval_success": res.final_eval_success, "wall_time_s": res.wall_time_s}
    return run_dir, float(done["final_eval_success"]), float(done["wall_time_s"])


def load_base(preset: str, overrides: list[str], steps: int | None, eval_episodes: int | None) -> dict:
    base = load_raw(preset)
    base.setdefault("trainer", {})["progress"] = False
    if steps is not None:
        base["trainer"]["total_steps"] = steps
    if eval_episodes is not None:
        base["trainer"]["eval_episodes"] = eval_episodes
    return apply_overrides(base, overrides)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--preset", default=GAIN_PRESET, help=f"trainer preset of the setting (default {GAIN_PRESET})")
    ap.add_argument("--algos", nargs="+", default=["sampo"], help="RL algorithms after BC (preset names; default sampo)")
    ap.add_argument("--steps", type=int, default=None, help="RL steps (default: the preset's)")
    ap.add_argument("--eval-episodes", type=int, default=None, help="held-out eval levels (default: the preset's)")
    ap.add_argument("--out", default="runs/bench_trainer")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra overrides of the preset")
    ap.add_argument("--random-only", action="store_true", help="only the random-moves baseline (20 policy seeds)")
    ap.add_argument("--results", default=None, help="also write table.md and summary.json to this folder (e.g. results/gain)")
    ap.add_argument("--bc-only", action="store_true", help="only train (or reuse) the BC policies of --seeds, no RL")
    ap.add_argument("--shared-bc", action="store_true", help="one BC policy (seed --bc-seed) for every seed; seeds vary RL and eval sampling")
    ap.add_argument("--bc-seed", type=int, default=0, help="seed of the shared BC policy (with --shared-bc)")
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side, one torch thread each (default 1)")
    args = ap.parse_args()

    out = Path(args.out)
    base = load_base(args.preset, args.overrides, args.steps, args.eval_episodes)
    n_eval = base["trainer"]["eval_episodes"]
    if args.random_only:
        xs = [random_success(base, s) for s in range(20)]
        m, se = mean_se(xs)
        print(f"random moves, first {n_eval} eval levels, 20 policy seeds: success {m:.3f} ± {se:.3f}")
        return 0

    rows: dict[str, list[float]] = {"random": [], "bc_only": [], **{f"bc+{a}": [] for a in args.algos}}
    walls: dict[str, list[float]] = {k: [] for k in rows}
    # each run is one process's work with one torch thread: --jobs of them side by side
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        if args.shared_bc:
            shared_dir = shared_bc_policy(base, args.bc_seed, out)
        else:
            bc_runs = dict(zip(args.seeds, pool.map(bc_policy, [base] * len(args.seeds), args.seeds, [out] * len(args.seeds))))
        futures: dict[tuple[int, str], Future] = {}
        for seed in args.seeds:
            if args.shared_bc:
                # BC-only = the shared BC policy evaluated with this seed's eval sampling
                futures[(seed, "bc_only")] = pool.submit(rl_run, base, seed, shared_dir, preset_algo_name(base), out, args.preset,
                                                         "_bc_only", total_steps=0)
            bc_dir = shared_dir if args.shared_bc else bc_runs[seed][0]
            if not args.bc_only:
                for algo in args.algos:
                    futures[(seed, algo)] = pool.submit(rl_run, base, seed, bc_dir, algo, out, args.preset)
        for seed in args.seeds:
            t = time.time()
            rows["random"].append(random_success(base, seed))
            walls["random"].append(time.time() - t)
            if args.shared_bc:
                _, bc_success, bc_wall = futures[(seed, "bc_only")].result()
            else:
                # BC-only = the BC run's own evaluation (same held-out levels and eval sampling as
                # the RL runs' final evaluation); its wall time includes that evaluation
                _, bc_success, bc_wall = bc_runs[seed]
            rows["bc_only"].append(bc_success)
            walls["bc_only"].append(bc_wall)
            print(f"seed {seed} BC-only: success {bc_success:.3f} ({bc_wall:.0f} s)", flush=True)
            if args.bc_only:
                continue
            for algo in args.algos:
                _, s, w = futures[(seed, algo)].result()
                rows[f"bc+{algo}"].append(s)
                walls[f"bc+{algo}"].append(w)
                print(f"seed {seed} BC+{algo}: success {s:.3f} ({w:.0f} s)", flush=True)

    if args.bc_only:
        return 0
    summary: dict = {"preset": args.preset, "overrides": args.overrides, "seeds": args.seeds, "eval_episodes": n_eval,
                     "shared_bc_seed": args.bc_seed if args.shared_bc else None,
                     "total_steps": base["trainer"]["total_steps"], "variants": {}, "paired_gain": {}}
    held_out = held_out_text(base)
    print(f"\n{args.preset}: {held_out}, seeds {args.seeds}")
    print(f"{'variant':<12} {'success mean':>12} {'± SE':>7} {'wall s':>8}   per seed")
    for k, xs in rows.items():
        m, se = mean_se(xs)
        w = sum(walls[k]) / len(walls[k])
        summary["variants"][k] = {"success": xs, "mean": m, "se": se, "wall_s": walls[k]}
        print(f"{k:<12} {m:>12.3f} {se:>7.3f} {w:>8.0f}   {' '.join(f'{x:.3f}' for x in xs)}")
    for algo in args.algos:
        diffs = [a - b for a, b in zip(rows[f"bc+{algo}"], rows["bc_only"])]
        m, se = mean_se(diffs)
        ratio = m / se if se and se > 0 else float("nan")
        wins = sum(d > 0 for d in diffs)
        summary["paired_gain"][algo] = {"diffs": diffs, "mean": m, "se": se, "gain_over_se": ratio, "seeds_improved": wins}
        verdict = "beats BC-only by > 2 SE" if ratio > 2 else "does NOT beat BC-only by > 2 SE"
        print(f"BC+{algo} - BC-only (paired by seed): {m:+.3f} ± {se:.3f} (gain/SE {ratio:.1f}; {wins}/{len(diffs)} seeds up): {verdict}")
    demo_wall = [a + b for a, b in zip(walls["bc_only"], walls[f"bc+{args.algos[0]}"])]
    print(f"BC + {args.algos[0]} wall time per seed: {sum(demo_wall) / len(demo_wall):.0f} s mean")
    summary["bc_plus_rl_wall_s"] = demo_wall
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.results:
        res = Path(args.results)
        res.mkdir(parents=True, exist_ok=True)
        (res / "summary.json").write_text(json.dumps(summary, indent=2))
        md = [f"# BC-only vs BC + RL: preset `{args.preset}`", "",
              f"Held-out: {held_out}; seeds {args.seeds}; "
              f"{summary['total_steps']} RL steps. Success mean ± SE over seeds (SE = sample std / sqrt(n))."
              + (f" One BC policy (seed {args.bc_seed}) shared by every seed: the seeds vary the RL run and the eval "
                 "sampling, not the BC run." if args.shared_bc else " Each seed trains its own BC policy."), "",
              "| variant | success mean ± SE | per seed | wall s (mean) |", "|---|---|---|---|"]
        for k, v in summary["variants"].items():
            md.append(f"| {k} | {v['mean']:.3f} ± {v['se']:.3f} | {', '.join(f'{x:.3f}' for x in v['success'])} | "
                      f"{sum(v['wall_s']) / len(v['wall_s']):.0f} |")
        md.append("")
        if args.shared_bc:
            md += ["Wall s of bc_only: the evaluation of the shared BC policy with that seed's sampling (the BC "
                   "training ran once and is not in the table); of bc+RL: RL steps plus the final evaluation.", ""]
        for algo, g in summary["paired_gain"].items():
            md.append(f"Paired gain BC+{algo} − BC-only: {g['mean']:+.3f} ± {g['se']:.3f} (gain / SE {g['gain_over_se']:.1f}; "
                      f"{g['seeds_improved']}/{len(g['diffs'])} seeds improved).")
        md += ["", f"Regenerate: `python benchmarks/bench_trainer.py {shlex.join(sys.argv[1:])}`", ""]
        (res / "table.md").write_text("\n".join(md), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
