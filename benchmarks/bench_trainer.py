"""BC-only vs BC+SAMPO vs BC+GRPO on Sokoban with the tiny demo model.

For each seed: uniformly random moves on the same levels (the floor); behaviour cloning once (the demo_cpu BC settings) -> its policy is "BC-only";
then SAMPO (the demo_cpu config) and GRPO (the grpo preset's algorithm section on the same
demo settings) start from that same BC policy. All are evaluated on the same fixed seeds of the
Sokoban eval split. Prints success mean ± SE (standard error over seeds) and wall times, and
writes a JSON summary.

    python benchmarks/bench_trainer.py --seeds 0 1 2 [--steps 10] [--eval-episodes 64] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from arlarena_baselines.config import load_raw, validate_config
from arlarena_baselines.train import run


def mean_se(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    return m, math.sqrt(var / len(xs))


def random_success(demo: dict, policy_seed: int) -> float:
    """Uniformly random moves on the same eval levels and env settings as the trainer's eval."""
    from arlarena_envs.policies import RandomPolicy
    from arlarena_envs.registry import make

    env_cfg = demo["env"]
    kwargs = dict(env_cfg.get("env_kwargs") or {})
    if env_cfg.get("max_steps") is not None:
        kwargs["max_steps"] = env_cfg["max_steps"]
    env = make(env_cfg.get("env_id", "arlarena/Sokoban-v0"), split="eval", **kwargs).unwrapped
    policy = RandomPolicy(seed=policy_seed)
    won = 0
    for i in range(demo["trainer"]["eval_episodes"]):
        obs, _ = env.reset_result(seed=i)
        while True:
            r = env.step_result(policy.act(obs))
            obs = r.observation
            if r.done:
                won += r.info.won
                break
    return won / demo["trainer"]["eval_episodes"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=None, help="RL steps (default: demo_cpu's)")
    ap.add_argument("--eval-episodes", type=int, default=None, help="eval seeds (default: demo_cpu's)")
    ap.add_argument("--out", default="runs/bench_trainer")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra demo_cpu overrides")
    ap.add_argument("--random-only", action="store_true", help="only the random-moves baseline (20 policy seeds)")
    args = ap.parse_args()

    out = Path(args.out)
    demo = load_raw("demo_cpu")
    demo.setdefault("trainer", {})["progress"] = False
    if args.steps is not None:
        demo["trainer"]["total_steps"] = args.steps
    if args.eval_episodes is not None:
        demo["trainer"]["eval_episodes"] = args.eval_episodes
    from arlarena_baselines.config import apply_overrides

    demo = apply_overrides(demo, args.overrides)
    grpo_algo = load_raw("grpo")["algorithm"]
    if args.random_only:
        xs = [random_success(demo, s) for s in range(20)]
        m, se = mean_se(xs)
        print(f"random moves, first {demo['trainer']['eval_episodes']} eval levels, 20 policy seeds: success {m:.3f} ± {se:.3f}")
        return 0

    rows: dict[str, list[float]] = {"random": [], "bc_only": [], "bc+sampo": [], "bc+grpo": []}
    walls: dict[str, list[float]] = {k: [] for k in rows}
    for seed in args.seeds:
        base = json.loads(json.dumps(demo))
        base["trainer"]["seed"] = seed
        base["env"]["seed"] = seed
        base["model"]["seed"] = seed
        t = time.time()
        rows["random"].append(random_success(base, seed))
        walls["random"].append(time.time() - t)
        bc_cfg = json.loads(json.dumps(base))
        bc_cfg["trainer"]["total_steps"] = 0
        t = time.time()
        bc = run(validate_config(bc_cfg), run_dir=out / f"s{seed}" / "bc")
        walls["bc_only"].append(time.time() - t)
        rows["bc_only"].append(bc.final_eval_success)
        print(f"seed {seed} BC-only: success {bc.final_eval_success:.3f} ({walls['bc_only'][-1]:.0f} s)", flush=True)
        for name, algo in (("bc+sampo", None), ("bc+grpo", grpo_algo)):
            cfg = json.loads(json.dumps(base))
            cfg["model"] = {"path": str(bc.run_dir / "ref_policy"), "dtype": "float32", "seed": seed}
            cfg["bc"]["enable"] = False
            cfg["trainer"]["eval_at_start"] = False
            if algo is not None:
                cfg["algorithm"] = algo
            t = time.time()
            res = run(validate_config(cfg), run_dir=out / f"s{seed}" / name.replace("+", "_"))
            walls[name].append(time.time() - t)
            rows[name].append(res.final_eval_success)
            print(f"seed {seed} {name}: success {res.final_eval_success:.3f} ({walls[name][-1]:.0f} s)", flush=True)

    summary = {}
    print(f"\nSokoban eval split, first {demo['trainer']['eval_episodes']} seeds, seeds {args.seeds}")
    print(f"{'variant':<10} {'success mean':>12} {'± SE':>8} {'wall s (mean)':>14}")
    for k, xs in rows.items():
        m, se = mean_se(xs)
        w = sum(walls[k]) / len(walls[k])
        summary[k] = {"success": xs, "mean": m, "se": se, "wall_s": walls[k]}
        print(f"{k:<10} {m:>12.3f} {se:>8.3f} {w:>14.0f}")
    demo_wall = [a + b for a, b in zip(walls["bc_only"], walls["bc+sampo"])]
    print(f"demo (BC + SAMPO) wall time: {sum(demo_wall) / len(demo_wall):.0f} s mean per seed (target < 900 s on 2 cores)")
    print(f"SAMPO - BC-only: {summary['bc+sampo']['mean'] - summary['bc_only']['mean']:+.3f}; "
          f"GRPO - BC-only: {summary['bc+grpo']['mean'] - summary['bc_only']['mean']:+.3f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"seeds": args.seeds, "demo_wall_s": demo_wall, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
