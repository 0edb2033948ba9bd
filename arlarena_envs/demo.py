"""`arlarena demo`: the main job, on the embedded defaults, offline.

1. Leaderboard: the random and oracle policies on every registered env, under each env's
   leaderboard protocol (split, max steps, template), `--episodes` episodes each.
2. Training: behaviour cloning then SAMPO on Sokoban with a tiny model on CPU
   (the trainer's `demo_cpu` preset; a few minutes on 2 cores).
3. The stability report of that run.
It ends by printing where every file went.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from arlarena_envs.errors import ArlArenaError, MissingDependencyError


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per env and policy in the demo leaderboard")
    p.add_argument("--envs", nargs="*", help="env ids to evaluate (default: every registered env)")
    p.add_argument("--train-config", default="demo_cpu", help="trainer preset or YAML path (default demo_cpu)")
    p.add_argument("--train-override", action="append", default=[], metavar="KEY=VALUE", help="override a training config key")
    p.add_argument("--skip-train", action="store_true", help="only the leaderboard part")


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_leaderboard(out: Path, episodes: int, env_ids: list[str] | None) -> tuple[Path, list[str]]:
    from arlarena_envs.leaderboard.evaluate import evaluate
    from arlarena_envs.leaderboard.render import load_rows, render_html, render_markdown
    from arlarena_envs.registry import load_specs

    specs = load_specs()
    ids = env_ids or sorted(specs)
    lb_dir = out / "leaderboard"
    skipped = []
    for env_id in ids:
        spec = specs[env_id] if env_id in specs else None
        if spec is None or spec.leaderboard is None:
            skipped.append(f"{env_id}: no leaderboard protocol")
            continue
        n = min(episodes, spec.leaderboard.episodes)
        for policy in ("random", "oracle"):
            t0 = time.perf_counter()
            try:
                row = evaluate(env_id, policy, episodes=n, out_dir=lb_dir)
            except MissingDependencyError as e:
                skipped.append(f"{env_id}: {e}")
                break
            except ArlArenaError as e:
                skipped.append(f"{env_id} / {policy}: {type(e).__name__}: {e}")
                continue
            rows_dir = lb_dir / "rows" / spec.name
            rows_dir.mkdir(parents=True, exist_ok=True)
            (rows_dir / f"{policy}.json").write_text(row.model_dump_json(indent=2) + "\n", encoding="utf-8")
            _say(
                f"  {env_id:<26} {policy:<7} success {row.success.mean:6.1%} ± {row.success.stderr:.1%}  "
                f"score {row.score.mean:8.3f}  ({n} episodes, {time.perf_counter() - t0:.1f} s)"
            )
    md, html = lb_dir / "leaderboard.md", lb_dir / "leaderboard.html"
    rows = load_rows(lb_dir / "rows")
    notes = [
        f"{r.env_id} / {r.policy}: demo subset, {r.provenance.episodes} episodes instead of the protocol's "
        f"{specs[r.env_id].leaderboard.episodes} (not a comparable leaderboard row; "
        f"`arlarena leaderboard evaluate` runs the full protocol)"
        for r in rows
        if r.provenance.overrides
    ]
    md.write_text(render_markdown(rows) + "".join(f"\n> {n}\n" for n in notes), encoding="utf-8")
    html.write_text(render_html(rows, notes), encoding="utf-8")
    return md, skipped


def run_training(out: Path, config: str, overrides: list[str]) -> Any:
    from arlarena_baselines.train import run

    return run(config, overrides=overrides or None, run_dir=out / "train")


def run_stability(out: Path, run_dir: Path) -> Path:
    from arlarena_envs.stability import analyze_runs
    from arlarena_envs.stability.report import write_report

    return write_report(analyze_runs([run_dir]), out / "stability")


def main_demo(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    _say(f"== 1/3 leaderboard: random and oracle policies, {args.episodes} episodes per env and policy")
    md, skipped = run_leaderboard(out, args.episodes, args.envs)
    _say("")
    _say(md.read_text(encoding="utf-8"))
    for s in skipped:
        _say(f"  skipped {s}")
    paths = {"leaderboard table": md, "leaderboard page": md.with_suffix(".html")}
    if not args.skip_train:
        _say("== 2/3 training: behaviour cloning then SAMPO on Sokoban, tiny model, CPU")
        result = run_training(out, args.train_config, args.train_override)
        _say(
            f"  BC-only eval success {result.bc_eval_success if result.bc_eval_success is not None else float('nan'):.1%}"
            f" -> after SAMPO {result.final_eval_success if result.final_eval_success is not None else float('nan'):.1%}"
            f" ({result.steps_done} RL steps, {result.wall_time_s:.0f} s, {result.stopped_reason})"
        )
        paths["training run"] = Path(result.run_dir)
        if result.metrics_path:
            paths["metrics log"] = Path(result.metrics_path)
        _say("== 3/3 stability report of the training run")
        report = run_stability(out, Path(result.run_dir))
        _say(report.read_text(encoding="utf-8").split("\n## ", 2)[0] if report.exists() else "")
        paths["stability report"] = report
    _say(f"== done in {time.perf_counter() - t0:.0f} s. Files:")
    for k, v in paths.items():
        _say(f"  {k:<18} {v}")
    return 0
