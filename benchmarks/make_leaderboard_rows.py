"""Regenerate the committed leaderboard rows: random and oracle on every registered env that has
a leaderboard protocol, then render results/LEADERBOARD.md and results/leaderboard.html.

    python benchmarks/make_leaderboard_rows.py                 # every env, both policies
    python benchmarks/make_leaderboard_rows.py --envs arlarena/Sokoban-v0 --jobs 2
    python benchmarks/make_leaderboard_rows.py --trained runs/sampo-Sokoban-v0-s0 --samples 2   # a trained run's row

--trained RUN_DIR (repeatable) adds the row of a trainer run's checkpoint instead of random and
oracle rows: the checkpoint picked by --checkpoint-rule (last, best-eval, step:N), evaluated on
--trained-env (default: the env the run trained on) with --samples episodes per task (pass@k),
its small artefacts copied to results/runs/<run name>/ (config, metrics log, stability report,
the weights when under 2 MB), provenance and stability score in the row. `--trained DIR=NAME`
names that folder (needed when run folders share a name, e.g. runs/bench_trainer/s*/sampo).

Each (env, policy) runs `arlarena_envs.leaderboard.evaluate` under the env's fixed protocol
(episode files in --out, resumable; rows in --results/<Env>-vN/<policy>.json). An env that
cannot be built here (missing extra or data) is reported and skipped; --strict makes that an
error. Prints wall time and episodes per second for each row.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _one(env_id: str, policy: str, out: str, results: str, workers: int) -> tuple[str, str, str, float, int]:
    from arlarena_envs.leaderboard import ProvenanceMismatchError, evaluate, policy_slug
    from arlarena_envs.registry import get_spec

    t0 = time.perf_counter()
    played: list[int] = []

    def count(done: int, total: int, e) -> None:
        played.append(e.index)

    try:
        row = evaluate(env_id, policy, out_dir=out, workers=workers, progress=count)
    except ProvenanceMismatchError:  # the spec changed since these episodes were played: start over
        played.clear()
        row = evaluate(env_id, policy, out_dir=out, resume=False, workers=workers, progress=count)
    spec = get_spec(env_id)
    dest = Path(results) / spec.name / f"{policy_slug(policy)}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(out) / spec.name / policy_slug(policy) / "row.json", dest)
    summary = f"success {row.success.fmt(3)}  score {row.score.fmt(3)}  steps {row.steps.fmt(1)}"
    return env_id, policy, summary, time.perf_counter() - t0, len(played)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="*", help="env ids (default: every registered env with a leaderboard protocol)")
    ap.add_argument("--policies", nargs="*", default=["random", "oracle"])
    ap.add_argument("--out", default=str(ROOT / "runs" / "leaderboard"), help="episode files (resumable)")
    ap.add_argument("--results", default=str(ROOT / "results"))
    ap.add_argument("--jobs", type=int, default=1, help="(env, policy) pairs evaluated in parallel processes")
    ap.add_argument("--workers", type=int, default=1, help="processes per (env, policy) pair (same results)")
    ap.add_argument("--strict", action="store_true", help="fail when an env cannot be evaluated here")
    ap.add_argument("--prune", action="store_true", help="delete rows of envs that are no longer registered")
    ap.add_argument("--trained", action="append", default=[], metavar="RUN_DIR[=NAME]",
                    help="a trainer run dir whose checkpoint gets a row (repeatable); NAME: its folder under results/runs/ "
                         "(default: the run folder's name)")
    ap.add_argument("--checkpoint-rule", default="last", help="with --trained: last (default), best-eval or step:N")
    ap.add_argument("--trained-env", help="with --trained: env to evaluate on (default: the run's env.env_id)")
    ap.add_argument("--samples", type=int, default=1, help="with --trained: episodes per task (n of pass@k)")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch threads for model policies (default 1)")
    ap.add_argument("--batch-size", type=int, default=16, help="with --trained: episodes played side by side (same results for any size)")
    args = ap.parse_args(argv)
    if args.trained:
        return trained_rows(args)

    from arlarena_envs.leaderboard.render import render
    from arlarena_envs.registry import load_specs

    specs = load_specs(refresh=True)
    envs = args.envs or sorted(i for i, s in specs.items() if s.leaderboard is not None)
    jobs = [(e, p) for e in envs for p in args.policies]
    failures: list[str] = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = {pool.submit(_one, e, p, args.out, args.results, args.workers): (e, p) for e, p in jobs}
        for fut in as_completed(futs):
            e, p = futs[fut]
            try:
                env_id, policy, summary, secs, n = fut.result()
            except Exception as exc:  # noqa: BLE001 - report every env, then decide
                failures.append(f"{e} / {p}: {type(exc).__name__}: {exc}")
                print(f"FAILED  {e:<30} {p:<8} {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                continue
            rate = f"{n} episodes played, {n / secs:.2f} episodes/s" if n else "all episodes on disk (resumed)"
            print(f"ok      {env_id:<30} {policy:<8} {summary}  ({secs:.1f} s; {rate})", flush=True)
    if args.prune:
        for d in Path(args.results).iterdir():
            if d.is_dir() and not any(s.name == d.name for s in specs.values()):
                shutil.rmtree(d)
                print(f"pruned  {d}")
    rows, notes = render(args.results, Path(args.results) / "LEADERBOARD.md", Path(args.results) / "leaderboard.html", skip_stale=True)
    for n in notes:
        print(f"note: {n}")
    print(f"{len(rows)} rows -> {args.results}/LEADERBOARD.md, leaderboard.html")
    if failures:
        print("not evaluated:\n  " + "\n  ".join(failures))
    return 1 if failures and args.strict else 0


def trained_rows(args: argparse.Namespace) -> int:
    """Evaluate each --trained run's checkpoint, write its row and artefacts, render."""
    import json
    import os

    import torch

    from arlarena_envs.leaderboard.render import render
    from arlarena_envs.leaderboard.trained_row import evaluate_trained

    torch.set_num_threads(args.torch_threads)
    os.chdir(ROOT)  # rows name repo-relative paths only
    results = os.path.relpath(Path(args.results).resolve(), ROOT)
    out = os.path.relpath(Path(args.out).resolve(), ROOT)
    for item in args.trained:
        run, _, name = item.partition("=")
        run_dir = Path(run).resolve()
        env_id = args.trained_env or json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["env"]["env_id"]
        t0 = time.perf_counter()
        row, dest = evaluate_trained(os.path.relpath(run_dir, ROOT), env_id, rule=args.checkpoint_rule, results_dir=results,
                                     out_dir=out, samples_per_task=args.samples, run_name=name or None, batch_size=args.batch_size)
        t = row.provenance.training
        passk = ", ".join(f"pass@{k} {v:.3f}" for k, v in sorted(row.pass_at_k.items())) or f"pass@1 {row.success.mean:.3f}"
        print(f"ok      {env_id} {row.policy}: success {row.success.fmt(3)}, {passk}, steps {row.steps.fmt(1)}, "
              f"stability {row.stability_score}, checkpoint {t.checkpoint_rule} step {t.checkpoint_step} "
              f"({time.perf_counter() - t0:.0f} s) -> {dest}", flush=True)
    rows, notes = render(results, Path(results) / "LEADERBOARD.md", Path(results) / "leaderboard.html", skip_stale=True)
    for n in notes:
        print(f"note: {n}")
    print(f"{len(rows)} rows -> {results}/LEADERBOARD.md, leaderboard.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
