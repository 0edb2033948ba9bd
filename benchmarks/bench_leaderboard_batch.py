"""Leaderboard evaluation of an hf: policy, one episode at a time vs `--batch-size B`, side by side.

Plays the same episodes (the env's leaderboard protocol, `--episodes` of them, `--samples` per
task) with batch size 1 and with each size given, prints the wall time, episodes per second and
the ratio to batch size 1, and checks that every batch size wrote the same episode files (the
per-episode generators make batching invisible in the results).

    python benchmarks/bench_leaderboard_batch.py [--policy results/runs/sampo-sokoban-gain-s0/policy] \
        [--env arlarena/Sokoban-v0] [--episodes 40] [--batch-sizes 4 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default=str(ROOT / "results/runs/sampo-sokoban-gain-s0/policy"), help="a save_pretrained folder")
    ap.add_argument("--env", default="arlarena/Sokoban-v0")
    ap.add_argument("--episodes", type=int, default=40, help="tasks (an override: the rows are not comparable ones)")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()

    import torch

    from arlarena_envs.leaderboard import episode_files_without_timing, evaluate

    torch.set_num_threads(args.threads)
    print(f"{args.env}, hf:{args.policy}, {args.episodes} tasks x {args.samples}, torch threads {args.threads}")
    print(f"{'batch':>6} {'wall s':>8} {'episodes/s':>11} {'vs batch 1':>11} {'success':>8}  same files as batch 1")
    base_wall, base_files = None, None
    with tempfile.TemporaryDirectory() as tmp:
        for b in [1, *args.batch_sizes]:
            out = Path(tmp) / f"b{b}"
            t = time.perf_counter()
            row = evaluate(args.env, f"hf:{args.policy}", episodes=args.episodes, samples_per_task=args.samples, out_dir=out,
                           batch_size=b, checkpoint_rule="bench")
            wall = time.perf_counter() - t
            files = episode_files_without_timing(out)
            if base_wall is None:
                base_wall, base_files = wall, files
            n = args.episodes * args.samples
            print(f"{b:>6} {wall:8.1f} {n / wall:11.2f} {base_wall / wall:10.2f}x {row.success.mean:8.3f}  {files == base_files}", flush=True)


if __name__ == "__main__":
    main()
