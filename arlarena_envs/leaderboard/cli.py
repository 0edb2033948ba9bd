"""`arlarena leaderboard evaluate|render`.

    arlarena leaderboard evaluate --env arlarena/Sokoban-v0 --policy oracle
    arlarena leaderboard evaluate --env arlarena/Sokoban-v0 --policy openai:Qwen/Qwen3-4B@http://127.0.0.1:8000/v1
    arlarena leaderboard evaluate --env arlarena/Sokoban-v0 --training-run runs/sampo-Sokoban-v0-s0 \
        --checkpoint-rule last --samples 2           # a trained checkpoint: provenance, stability, pass@k, artefacts
    arlarena leaderboard render                      # results/ -> results/LEADERBOARD.md + results/leaderboard.html

evaluate: episode files go to --out (default runs/leaderboard; resumable), the row to
--results/<Env>-vN/<policy>.json (default results/). render: refuses rows whose provenance does
not match the current specs unless --skip-stale.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from arlarena_envs.errors import ConfigError


def add_leaderboard_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="{evaluate,render}")
    ev = sub.add_parser("evaluate", help="play an env's leaderboard protocol with a policy and write its row")
    ev.add_argument("--env", required=True, help="env id, e.g. arlarena/Sokoban-v0")
    ev.add_argument("--policy", help="random | oracle | hf:/path/to/model | openai:MODEL@http://HOST:PORT/v1 (with --training-run: optional, "
                    "must be the checkpoint the rule picks)")
    ev.add_argument("--episodes", type=int, help="override the protocol's episode count (the row is then marked as not comparable)")
    ev.add_argument("--max-steps", type=int, help="override max steps (smoke tests; not comparable)")
    ev.add_argument("--out", default="runs/leaderboard", help="episode files (resumable); default runs/leaderboard")
    ev.add_argument("--results", default="results", help="where the row goes (<results>/<Env>-vN/<policy>.json); '' = nowhere")
    ev.add_argument("--backend", default="inprocess", choices=["inprocess", "remote"], help="where the env runs")
    ev.add_argument("--url", help="env server URL for --backend remote (arlarena serve)")
    ev.add_argument("--checkpoint-rule", help="how the evaluated checkpoint was chosen; with --training-run: last (default), best-eval or step:N")
    ev.add_argument("--stability-run", help="training run dir: put its `arlarena stability` score in the row")
    ev.add_argument("--training-run", help="a trainer run dir (`arlarena train --run-dir`): evaluate its checkpoint picked by "
                    "--checkpoint-rule, copy its small artefacts to <results>/runs/<name>/, record its provenance and stability score")
    ev.add_argument("--run-name", help="with --training-run: the folder name under <results>/runs/ (default: the run folder's name)")
    ev.add_argument("--samples", type=int, default=1, help="episodes per task for a sampling policy (n of pass@k; default 1)")
    ev.add_argument("--torch-threads", type=int, help="torch.set_num_threads for hf: policies on CPU (1 is fastest on a shared box)")
    ev.add_argument("--no-resume", action="store_true", help="delete episode files of an earlier run and start over")
    ev.add_argument("--keep-prompts", action="store_true", help="store each turn's prompt in the episode files")
    ev.add_argument("--workers", type=int, default=1, help="parallel processes for random/oracle (same results)")
    ev.add_argument("--batch-size", type=int, default=1,
                    help="hf:/openai: policies: episodes played side by side, one batched generation (or concurrent "
                         "requests) per turn; each episode samples from its own seed (same results for any size)")
    ev.add_argument("--quiet", action="store_true")
    rd = sub.add_parser("render", help="render results/ as Markdown and a sortable HTML page")
    rd.add_argument("--results", default="results", help="folder of row files (default results/)")
    rd.add_argument("--md", default=None, help="Markdown output (default <results>/LEADERBOARD.md)")
    rd.add_argument("--html", default=None, help="HTML output (default <results>/leaderboard.html)")
    rd.add_argument("--skip-stale", action="store_true", help="drop rows that do not match the current specs instead of failing")


def _evaluate(args: argparse.Namespace) -> int:
    from arlarena_envs.leaderboard.evaluate import evaluate, policy_slug
    from arlarena_envs.registry import get_spec

    if args.backend == "remote" and not args.url:
        raise ConfigError("--backend remote needs --url http://127.0.0.1:PORT (see `arlarena serve`)")
    if not args.policy and not args.training_run:
        raise ConfigError("give --policy (random, oracle, hf:PATH, openai:MODEL@URL) or --training-run RUN_DIR")
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)

    tty = sys.stderr.isatty()

    def progress(done: int, total: int, e) -> None:
        if args.quiet:
            return
        msg = f"{done}/{total} episodes (last: won={e.won} steps={e.steps})"
        if tty:
            print("\r" + msg, end="", file=sys.stderr, flush=True)
        elif done == total or done % max(1, total // 10) == 0:
            print(msg, file=sys.stderr, flush=True)

    if args.training_run:
        from arlarena_envs.leaderboard.trained_row import evaluate_trained

        if args.backend != "inprocess" or args.stability_run:
            raise ConfigError("--training-run evaluates in process and takes the stability score from the run itself: "
                              "drop --backend / --stability-run")
        row, dest = evaluate_trained(
            args.training_run, args.env, rule=args.checkpoint_rule or "last", results_dir=args.results or "results",
            out_dir=args.out, samples_per_task=args.samples, policy=args.policy, resume=not args.no_resume, progress=progress,
            episodes=args.episodes, max_steps=args.max_steps, run_name=args.run_name, batch_size=args.batch_size,
        )
        if tty and not args.quiet:
            print(file=sys.stderr)
        if dest is None:
            print(f"row not copied to {args.results or 'results'}/: evaluated with overrides {row.provenance.overrides}, "
                  "so not comparable", file=sys.stderr)
        else:
            print(f"row: {dest}")
        print(_summary(row))
        return 0
    row = evaluate(
        args.env, args.policy, episodes=args.episodes, out_dir=args.out, backend=args.backend, url=args.url,
        resume=not args.no_resume, checkpoint_rule=args.checkpoint_rule, max_steps=args.max_steps,
        stability_run=args.stability_run, keep_prompts=args.keep_prompts, progress=progress, workers=args.workers,
        samples_per_task=args.samples, batch_size=args.batch_size,
    )
    if tty and not args.quiet:
        print(file=sys.stderr)
    spec = get_spec(args.env)
    src = Path(args.out) / spec.name / policy_slug(row.policy) / "row.json"
    if args.results and row.provenance.overrides:
        print(f"row not copied to {args.results}/: evaluated with overrides {row.provenance.overrides}, so not comparable "
              f"(it stays in {src})", file=sys.stderr)
    elif args.results:
        dest = Path(args.results) / spec.name / f"{policy_slug(row.policy)}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        print(f"row: {dest}")
    print(_summary(row))
    return 0


def _summary(row) -> str:
    passk = "".join(f", pass@{k} {v:.3f}" for k, v in sorted(row.pass_at_k.items()))
    stab = "" if row.stability_score is None else f", stability {row.stability_score:.1f}"
    return (
        f"{row.env_id} {row.policy}: success {row.success.fmt(3)}, score {row.score.fmt(3)}, "
        f"steps {row.steps.fmt(1)}, parse ok {100 * row.parse_rates.get('ok', 0):.1f}% over {row.episodes} episodes{passk}{stab}"
        + (f" (overrides {row.provenance.overrides}: not comparable)" if row.provenance.overrides else "")
    )


def _render(args: argparse.Namespace) -> int:
    from arlarena_envs.leaderboard.render import render

    md = args.md or str(Path(args.results) / "LEADERBOARD.md")
    page = args.html or str(Path(args.results) / "leaderboard.html")
    rows, notes = render(args.results, md, page, skip_stale=args.skip_stale)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    print(f"{len(rows)} rows -> {md}, {page}")
    return 0


def main_leaderboard(args: argparse.Namespace) -> int:
    return _evaluate(args) if args.action == "evaluate" else _render(args)


add_arguments = add_leaderboard_arguments
main = main_leaderboard
