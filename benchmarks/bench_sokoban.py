"""Sokoban steps/s: ours (in-process) vs gym-sokoban 0.0.6 on the same room size and box count.

Times are CPU seconds of the measuring process (time.process_time), so a busy shared machine
does not skew the ratio. Random actions, episodes capped at --episode-steps, resets included (room generation dominates
gym-sokoban, so pure step rates alone would flatter nobody). gym-sokoban needs old `gym` and
numpy<2, so it runs in its own venv (created on first use under .bench-venvs/gym-sokoban, or
pass --gym-sokoban-python). Prints both figures and the ratio (target: ours >= 5x).

    python benchmarks/bench_sokoban.py [--seconds 10] [--dim 6] [--boxes 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GYM_SOKOBAN_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, warnings
    warnings.filterwarnings("ignore")
    import numpy as np
    from gym_sokoban.envs.sokoban_env import SokobanEnv
    dim, boxes, seconds, ep_steps = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    np.random.seed(0)
    rng = np.random.default_rng(0)
    env = SokobanEnv(dim_room=(dim, dim), num_boxes=boxes, max_steps=ep_steps)
    steps = resets = 0
    step_time = 0.0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        env.reset()
        resets += 1
        for _ in range(ep_steps):
            a = int(rng.integers(1, 5))  # push up/down/left/right, as verl-agent maps them
            s0 = time.process_time()
            _, _, done, _ = env.step(a, observation_mode="tiny_rgb_array")[:4]
            step_time += time.process_time() - s0
            steps += 1
            if done:
                break
    total = time.process_time() - t0
    print(json.dumps({"steps": steps, "resets": resets, "seconds": total, "pure_step_seconds": step_time}))
    """
)


def ensure_gym_sokoban(python: str | None) -> str:
    if python:
        return python
    venv = ROOT / ".bench-venvs" / "gym-sokoban"
    py = venv / "bin" / "python"
    if not py.exists():
        print("creating the gym-sokoban venv (gym 0.26.2, numpy<2) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "gym==0.26.2", "gym-sokoban==0.0.6", "numpy<2"], check=True)
    return str(py)


def bench_ours(dim: int, boxes: int, seconds: float, ep_steps: int) -> dict:
    import numpy as np

    import arlarena_envs  # noqa: F401
    from arlarena_envs.registry import make

    env = make("arlarena/Sokoban-v0", dim_room=(dim, dim), num_boxes=boxes, max_steps=ep_steps).unwrapped
    rng = np.random.default_rng(0)
    actions = ["up", "down", "left", "right"]
    steps = resets = seed = 0
    step_time = 0.0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        env.reset(seed=seed)
        seed += 1
        resets += 1
        while True:
            a = actions[int(rng.integers(4))]
            s0 = time.process_time()
            _, _, term, trunc, _ = env.step(a)
            step_time += time.process_time() - s0
            steps += 1
            if term or trunc:
                break
    total = time.process_time() - t0
    return {"steps": steps, "resets": resets, "seconds": total, "pure_step_seconds": step_time}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--dim", type=int, default=6)
    p.add_argument("--boxes", type=int, default=1)
    p.add_argument("--episode-steps", type=int, default=50)
    p.add_argument("--gym-sokoban-python", help="python of a venv with gym-sokoban installed")
    args = p.parse_args()

    ours = bench_ours(args.dim, args.boxes, args.seconds, args.episode_steps)
    py = ensure_gym_sokoban(args.gym_sokoban_python)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [py, "-c", GYM_SOKOBAN_SCRIPT, str(args.dim), str(args.boxes), str(args.seconds), str(args.episode_steps)],
        capture_output=True, text=True, env=env, check=True,
    )
    theirs = json.loads(out.stdout.strip().splitlines()[-1])

    def rates(r: dict) -> tuple[float, float, float]:
        return r["steps"] / r["seconds"], r["steps"] / max(r["pure_step_seconds"], 1e-9), r["seconds"] / r["resets"]

    o_all, o_pure, o_reset = rates(ours)
    t_all, t_pure, t_reset = rates(theirs)
    print(f"room {args.dim}x{args.dim}, {args.boxes} box(es), random actions, episodes <= {args.episode_steps} steps, {args.seconds:.0f} CPU-s each")
    print(f"{'':<14}{'steps/s (incl. resets)':>24}{'pure steps/s':>15}{'s per episode':>15}")
    print(f"{'arlarena':<14}{o_all:>24,.0f}{o_pure:>15,.0f}{o_reset:>15.4f}")
    print(f"{'gym-sokoban':<14}{t_all:>24,.0f}{t_pure:>15,.0f}{t_reset:>15.4f}")
    print(f"ratio (ours / gym-sokoban), steps/s including resets: {o_all / t_all:.1f}x   (target >= 5x)")
    print(f"ratio, pure steps/s: {o_pure / t_pure:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
