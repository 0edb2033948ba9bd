"""The paper's comparison in miniature: GRPO, GSPO, CISPO, GiGPO and SAMPO on one budget,
judged by the stability evaluator (`arlarena stability`), plus a deliberately unstable setting.

Every method starts from the same behaviour-cloned policy (per seed, or one for all with
--shared-bc, as bench_trainer.py; shared through --bc-out) and runs the learning-gain setting
(`sokoban_gain` by default) with the algorithm section of its own preset, for the same number of
RL steps, groups and LR. Unlike the gain setting (one on-policy mini-batch per step) the
comparison splits each step's rows into mini-batches of --mini-batch (default 128: ~3-4
optimizer steps per RL step, as at paper scale where a step's rows far exceed a mini-batch), so
the later mini-batches are off-policy and each loss's clipping and IS handling is exercised.
The unstable setting raises the LR (--unstable-lr) for --unstable-algos.

Writes to --results: table.md (held-out success mean ± SE over seeds, and the evaluator's final
training success, best-minus-last, collapse rate and stability score per method), summary.json,
held_out_success.png, and the evaluator's own report (stability/report.md, report.json, plots).
Runs are reused when their result.json exists.

    python benchmarks/bench_comparison.py --seeds 0 1 2 --shared-bc --bc-out runs/gain --jobs 2
    python benchmarks/bench_comparison.py --seeds 0 --steps 3 --algos grpo sampo --no-unstable   # smoke
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shlex
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_trainer import bc_policy, load_base, mean_se, rl_run, shared_bc_policy  # noqa: E402

ALGOS = ["grpo", "gspo", "cispo", "gigpo", "sampo"]


def fmt(m: float | None, se: float | None, digits: int = 3) -> str:
    if m is None:
        return "–"
    if se is None or se != se:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {se:.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--algos", nargs="+", default=ALGOS)
    ap.add_argument("--preset", default="sokoban_gain")
    ap.add_argument("--steps", type=int, default=20, help="RL steps of every method (default 20)")
    ap.add_argument("--groups", type=int, default=16, help="rollout.num_groups of every method (default 16, x G=4)")
    ap.add_argument("--mini-batch", type=int, default=128, help="ppo_mini_batch_size of every method (default 128: ~3-4 per step)")
    ap.add_argument("--eval-episodes", type=int, default=500, help="held-out eval episodes (default 500: each eval level once)")
    ap.add_argument("--unstable-lr", type=float, default=2e-3, help="LR of the unstable setting (default 2e-3, 6.7x)")
    ap.add_argument("--unstable-algos", nargs="+", default=["grpo", "sampo"])
    ap.add_argument("--no-unstable", action="store_true")
    ap.add_argument("--bc-out", default="runs/gain", help="where the BC policies are (shared with bench_trainer.py)")
    ap.add_argument("--out", default="runs/comparison")
    ap.add_argument("--results", default="results/comparison")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--shared-bc", action="store_true",
                    help="one BC policy (seed --bc-seed, as bench_trainer.py --shared-bc) for every seed and method")
    ap.add_argument("--bc-seed", type=int, default=0, help="seed of the shared BC policy (with --shared-bc)")
    ap.add_argument("--jobs", type=int, default=1, help="runs side by side, one torch thread each (default 1)")
    args = ap.parse_args()

    overrides = [f"trainer.ppo_mini_batch_size={args.mini_batch}", f"rollout.num_groups={args.groups}", *args.overrides]
    base = load_base(args.preset, overrides, args.steps, args.eval_episodes)
    unstable = load_base(args.preset, overrides + [f"trainer.lr={args.unstable_lr}"], args.steps, args.eval_episodes)
    settings = [("", base, args.algos)]
    if not args.no_unstable:
        settings.append((f"@lr{args.unstable_lr:g}", unstable, args.unstable_algos))
    out, bc_out = Path(args.out), Path(args.bc_out)
    bc_base = load_base(args.preset, [], None, None)
    # every run is one process's work with one torch thread: --jobs of them side by side
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        if args.shared_bc:
            shared = shared_bc_policy(bc_base, args.bc_seed, bc_out)
            bc_dirs = {seed: shared for seed in args.seeds}
        else:
            bc_dirs = dict(zip(args.seeds, (d for d, _, _ in pool.map(bc_policy, [bc_base] * len(args.seeds), args.seeds,
                                                                          [bc_out] * len(args.seeds)))))
        # the BC policy itself on this comparison's eval levels (0 RL steps), then every method
        jobs: list[tuple[str, int, Future]] = []
        for seed in args.seeds:
            jobs.append(("bc_only", seed, pool.submit(rl_run, base, seed, bc_dirs[seed], "sampo", out, args.preset,
                                                      "_bc_only", total_steps=0)))
            for tag, cfg, algos in settings:
                for algo in algos:
                    jobs.append((f"{algo}{tag}", seed, pool.submit(rl_run, cfg, seed, bc_dirs[seed], algo, out, args.preset,
                                                                   tag.replace("@", "_"))))
        runs: dict[str, list[tuple[int, Path, float]]] = {}
        for method, seed, fut in jobs:
            run_dir, success, wall = fut.result()
            runs.setdefault(method, []).append((seed, run_dir, success))
            print(f"seed {seed} {method}: held-out success {success:.3f} ({wall:.0f} s)", flush=True)

    from arlarena_envs.stability import analyze_runs, write_report

    names, dirs = [], []
    for method, items in runs.items():
        if method == "bc_only":
            continue
        for seed, d, _ in items:
            names.append(f"{method}_s{seed}")
            dirs.append(d)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    report = analyze_runs(dirs, names=names)
    write_report(report, results / "stability")
    groups = {g.group: g for g in report.groups}

    lines = [
        "# The comparison in miniature (Sokoban, tiny model, CPU)",
        "",
        f"Preset `{args.preset}` with {args.steps} RL steps of {args.groups} groups x G, ppo_mini_batch_size {args.mini_batch}, "
        f"seeds {args.seeds}; every method starts from the same BC policy "
        + ("(one for every seed: the seeds vary the RL run and the eval sampling). " if args.shared_bc else "of each seed. ")
        + f"Held-out success: {base['trainer']['eval_episodes']} episodes on the eval split's levels after the last step "
        "(mean ± SE over seeds). The other "
        "columns are the stability evaluator's (`arlarena stability`) on each run's metrics.jsonl, from the training "
        "success signal: final = trailing mean at the last step, best − last = peak − final, collapse rate = fraction of "
        "seeds with a collapse alarm, stability score = 100·retention·calm.",
        "",
        "| method | held-out success | final train success | best − last | collapse rate | stability score |",
        "|---|---|---|---|---|---|",
    ]
    summary: dict = {"preset": args.preset, "steps": args.steps, "mini_batch": args.mini_batch, "seeds": args.seeds,
                     "unstable_lr": None if args.no_unstable else args.unstable_lr, "methods": {}}
    for method, items in runs.items():
        held = [s for _, _, s in items]
        hm, hse = mean_se(held)
        entry: dict = {"held_out_success": held, "held_out_mean": hm, "held_out_se": hse}
        g = groups.get(method)
        if g is not None:
            bml = [r.best_minus_last for r in report.runs if r.group == method and r.best_minus_last is not None]
            bm, bse = mean_se(bml) if bml else (None, None)
            entry.update(final_success=g.final_success.model_dump(), best_minus_last=bml, collapse_rate=g.collapse_rate,
                         stability_score=g.stability_score.model_dump())
            lines.append(f"| {method} | {fmt(hm, hse)} | {fmt(g.final_success.mean, g.final_success.stderr)} | {fmt(bm, bse)} | "
                         f"{g.collapse_rate:.2f} | {fmt(g.stability_score.mean, g.stability_score.stderr, 1)} |")
        else:
            lines.append(f"| {method} (no RL) | {fmt(hm, hse)} | – | – | – | – |")
        summary["methods"][method] = entry
    order = sorted((m for m in summary["methods"] if m != "bc_only" and "@" not in m),
                   key=lambda m: -summary["methods"][m]["held_out_mean"])
    lines += ["", "Ordering by held-out success: " + " > ".join(order) + ".", "",
              f"Regenerate: `python benchmarks/bench_comparison.py {shlex.join(sys.argv[1:])}`",
              ""]
    (results / "table.md").write_text("\n".join(lines), encoding="utf-8")
    (results / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ms = list(summary["methods"])
        fig, ax = plt.subplots(figsize=(1.2 * len(ms) + 2, 3.5))
        ax.bar(range(len(ms)), [summary["methods"][m]["held_out_mean"] for m in ms],
               yerr=[summary["methods"][m]["held_out_se"] or 0 for m in ms], capsize=4, color="#4c72b0")
        ax.set_xticks(range(len(ms)), ms, rotation=30, ha="right")
        ax.set_ylabel("held-out success (mean ± SE)")
        ax.set_title(f"{args.preset}: {args.steps} RL steps, seeds {args.seeds}")
        fig.tight_layout()
        fig.savefig(results / "held_out_success.png", dpi=120)
        plt.close(fig)
    except ImportError:
        print("matplotlib missing: no held_out_success.png", file=sys.stderr)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
