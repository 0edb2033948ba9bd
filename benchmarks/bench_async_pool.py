"""Lockstep vs asynchronous pool: env steps per second with a simulated LLM (continuous batching).

    python benchmarks/bench_async_pool.py --env alfworld --envs 64 --turns 3
    python benchmarks/bench_async_pool.py --env sokoban-delay --envs 64 --turns 20

The simulated LLM answers request (env i, turn t) after a latency drawn from a log-normal
(median `--llm-median-s`, shape `--llm-sigma`; the same draw for (i, t) in both modes), the
spread a serving engine shows when response lengths differ. The two modes do the same work:
every env plays `--turns` turns (fewer if its episode ends) from the same reset state, with the
same replies (a seeded choice among the admissible actions).

* lockstep: the classic loop. A batch generate call returns when its LONGEST reply is done
  (the batch waits max(latency)), then `pool.step(actions)` returns when its SLOWEST env is done.
* async: `AsyncEnvPool` + per-request futures. Each env's reply arrives after its own latency,
  the env steps at once (`step_async`), its next request goes out as soon as its step is done.

Envs:
* alfworld: arlarena/ALFWorld-v0 (the TextWorld engine, ~50 ms a step on an idle core). The
  pool's 64 envs play `--games` distinct generated games (GRPO groups of 64/games), so only
  that many games are generated (cached under $ARLARENA_CACHE) before the timed part.
* sokoban-delay: arlarena/Sokoban-v0 with an injected per-step delay: each env has a fixed
  speed (the tasks whose id is a multiple of 8 are 10x slower, as a slow engine or a game build is) times a log-normal
  draw per step, median `--delay-median-ms`. The delay is a sleep (an env waiting on an
  engine or I/O), so it overlaps across lanes and server threads.

Resets are done (lockstep, untimed) before the timed part; wall-clock time of the stepping phase
only. Prints steps/s for both modes side by side and their ratio.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOKOBAN_MOVES = ["up", "down", "left", "right"]


# ---------------------------------------------------------------------------- the injected delay

class DelayedSokoban:
    """Built by the registry from the temporary spec below: Sokoban whose steps take longer."""

    def __new__(cls, spec=None, delay_median_ms: float = 20.0, delay_sigma: float = 0.5, slow_every: int = 8, slow_factor: float = 10.0, **kwargs):
        from arlarena_envs.sokoban import SokobanEnv

        class _Delayed(SokobanEnv):
            def _load_task(self, task_id, split, rng):
                # the same envs are slow in both modes: 1 task in `slow_every`, by task id
                self._speed = slow_factor if task_id % slow_every == 0 else 1.0
                self._delay_rng = random.Random(task_id)
                return super()._load_task(task_id, split, rng)

            def _apply(self, action):  # the wait (an engine, I/O), then the rules
                time.sleep(self._speed * delay_median_ms / 1e3 * math.exp(delay_sigma * self._delay_rng.gauss(0.0, 1.0)))
                return super()._apply(action)

        return _Delayed(spec=spec, **kwargs)


def delayed_sokoban_registry(args: argparse.Namespace) -> str:
    """A registry dir with arlarena/DelayedSokoban-v0 (Sokoban's spec, this module's class);
    exported through ARLARENA_REGISTRY_PATH and PYTHONPATH so pool workers find it too."""
    import yaml

    from arlarena_envs.registry import spec_path

    spec = yaml.safe_load(spec_path("arlarena/Sokoban-v0").read_text())
    spec.update(id="arlarena/DelayedSokoban-v0", entry_point="bench_async_pool:DelayedSokoban", golden=[])
    spec["kwargs"] = {**spec.get("kwargs", {}), "delay_median_ms": args.delay_median_ms, "slow_every": 8, "slow_factor": 10.0}
    spec.pop("leaderboard", None)
    d = Path(tempfile.mkdtemp(prefix="arlarena-bench-registry-"))
    (d / "DelayedSokoban-v0.yaml").write_text(yaml.safe_dump(spec))
    os.environ["ARLARENA_REGISTRY_PATH"] = str(d)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent), str(ROOT), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from arlarena_envs.registry import load_specs

    load_specs(refresh=True)
    return "arlarena/DelayedSokoban-v0"


# ---------------------------------------------------------------------------- the simulated LLM

class SimulatedLLM:
    """Replies after a log-normal latency, the same for (env, turn) in both modes."""

    def __init__(self, median_s: float, sigma: float, seed: int = 0):
        self.median_s, self.sigma, self.seed = median_s, sigma, seed

    def latency(self, i: int, t: int) -> float:
        return self.median_s * math.exp(self.sigma * random.Random(f"{self.seed}-{i}-{t}").gauss(0.0, 1.0))

    def reply(self, i: int, t: int, admissible: list[str] | None) -> str:
        options = admissible or SOKOBAN_MOVES
        return random.Random(f"a-{self.seed}-{i}-{t}").choice(options)

    def submit(self, i: int, t: int, admissible: list[str] | None) -> cf.Future:
        """One request to an engine with continuous batching: its own latency, nobody else's."""
        fut: cf.Future = cf.Future()
        timer = threading.Timer(self.latency(i, t), lambda: fut.set_result(self.reply(i, t, admissible)))
        timer.daemon = True
        timer.start()
        return fut


# ---------------------------------------------------------------------------- the two loops

def run_lockstep(pool, firsts, llm: SimulatedLLM, turns: int) -> tuple[int, float]:
    n = pool.num_envs
    obs = [o for o, _ in firsts]
    active = [True] * n
    steps, t0 = 0, time.perf_counter()
    for t in range(turns):
        idx = [i for i in range(n) if active[i]]
        if not idx:
            break
        time.sleep(max(llm.latency(i, t) for i in idx))  # the batch returns with its longest reply
        actions = [llm.reply(i, t, obs[i].admissible_actions) if active[i] else None for i in range(n)]
        for i, r in enumerate(pool.step(actions)):
            if r is None:
                continue
            steps += 1
            obs[i] = r.observation
            if r.done:
                active[i] = False
    return steps, time.perf_counter() - t0


def run_async(apool, firsts, llm: SimulatedLLM, turns: int) -> tuple[int, float]:
    n = apool.num_envs
    obs = [o for o, _ in firsts]
    turn = [0] * n
    steps, t0 = 0, time.perf_counter()
    waiting: dict[cf.Future, tuple[str, int]] = {llm.submit(i, 0, obs[i].admissible_actions): ("llm", i) for i in range(n)}
    while waiting:
        done, _ = cf.wait(list(waiting), return_when=cf.FIRST_COMPLETED)
        for f in done:
            kind, i = waiting.pop(f)
            if kind == "llm":
                waiting[apool.step_async(i, f.result())] = ("env", i)
                continue
            c = f.result()
            if c.error is not None:
                raise c.error
            steps += 1
            obs[i] = c.result.observation
            turn[i] += 1
            if not c.result.done and turn[i] < turns:
                waiting[llm.submit(i, turn[i], obs[i].admissible_actions)] = ("llm", i)
    return steps, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", choices=["alfworld", "sokoban-delay"], default="sokoban-delay")
    ap.add_argument("--envs", type=int, default=64)
    ap.add_argument("--turns", type=int, default=None, help="turns per env (default: 3 alfworld, 20 sokoban-delay)")
    ap.add_argument("--games", type=int, default=8, help="alfworld: distinct games among the envs")
    ap.add_argument("--backends", default="inprocess,subprocess", help="comma list of inprocess, subprocess")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="subprocess workers (default: cores)")
    ap.add_argument("--llm-median-s", type=float, default=None, help="default: 1.0 alfworld, 0.3 sokoban-delay")
    ap.add_argument("--llm-sigma", type=float, default=0.6)
    ap.add_argument("--delay-median-ms", type=float, default=20.0)
    args = ap.parse_args()

    from arlarena_envs.pools import make_pool
    from arlarena_envs.pools.async_pool import AsyncEnvPool

    if args.env == "alfworld":
        env_id, turns, median = "arlarena/ALFWorld-v0", args.turns or 3, args.llm_median_s or 1.0
        seeds = [i % args.games for i in range(args.envs)]
    else:
        env_id, turns, median = delayed_sokoban_registry(args), args.turns or 20, args.llm_median_s or 0.3
        seeds = [i // 4 for i in range(args.envs)]
    llm = SimulatedLLM(median, args.llm_sigma)
    print(f"== {env_id}: {args.envs} envs, {turns} turns each, simulated LLM latency median {median:g} s "
          f"(log-normal sigma {args.llm_sigma:g}); cores here: {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f} ==")
    print(f"{'backend':<16} {'lockstep steps/s':>17} {'async steps/s':>14} {'async / lockstep':>17} {'steps':>6}")
    for backend in args.backends.split(","):
        kw = {"num_workers": args.workers} if backend == "subprocess" else {}
        lanes = args.envs if args.env == "sokoban-delay" else None  # sleeping envs overlap in threads
        rates = []
        for mode in ("lockstep", "async"):
            pool = make_pool(env_id, args.envs, backend=backend, **kw)
            try:
                if mode == "async":
                    pool = AsyncEnvPool(pool, max_threads=lanes if backend == "inprocess" else None)
                firsts = pool.reset(seeds)  # untimed: game builds and loads
                steps, dt = (run_lockstep if mode == "lockstep" else run_async)(pool, firsts, llm, turns)
            finally:
                pool.close()
            rates.append((steps, steps / dt))
        name = backend + (f" x{args.workers}" if kw else "")
        print(f"{name:<16} {rates[0][1]:17.1f} {rates[1][1]:14.1f} {rates[1][1] / rates[0][1]:16.2f}x {rates[0][0]:6d}", flush=True)


if __name__ == "__main__":
    main()
