"""Env server benchmark (Sokoban over loopback): step latency remote vs in-process, pool
throughput with 1, 2, 4 subprocess workers, and sessions held per core.

    python benchmarks/bench_server.py [--steps 3000] [--pool-envs 32] [--pool-rounds 60] [--sessions 1024]

1. Step latency: p50/p99 of `step_result` wall time for one env, in-process vs a RemoteEnv over
   WebSocket and over HTTP to an `arlarena serve` subprocess (the same action stream, random
   moves, reset when an episode ends). Target: WebSocket p50 <= 1 ms.
2. Pool throughput: env steps/s of `make_pool(..., backend="subprocess")` with 1, 2, 4 workers
   stepping `--pool-envs` envs as batches (and the in-process pool for reference). Wall clock
   of whole batches, so it includes the client's work; on a machine with C cores more than C
   workers cannot help.
3. Sessions per core: one server process (one core: the event loop runs the envs) holds
   `--sessions` open sessions; 64 client threads step them round-robin; prints the held count,
   the server's RSS per session, the p50/p99 step latency while all are held, and the steps/s
   that one core sustains across them.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACTIONS = ["up", "down", "left", "right"]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def latency(env, steps: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    env.reset_result(seed=seed)
    out = []
    for i in range(steps):
        a = rng.choice(ACTIONS)
        t0 = time.perf_counter()
        r = env.step_result(a)
        out.append(time.perf_counter() - t0)
        if r.done:
            env.reset_result(seed=seed + i + 1)
    return out


def bench_latency(url: str, steps: int) -> None:
    import arlarena_envs
    from arlarena_envs.server.client import RemoteEnv

    env_id = "arlarena/Sokoban-v0"
    rows = []
    local = arlarena_envs.make(env_id).unwrapped
    latency(local, 200)
    rows.append(("in-process", latency(local, steps)))
    for transport in ("ws", "http"):
        remote = RemoteEnv(env_id, url=url, transport=transport)
        latency(remote, 200)
        rows.append((f"remote {transport}", latency(remote, steps)))
        remote.close()
    base = pct(rows[0][1], 0.5)
    print(f"\n== step latency, Sokoban, {steps} steps (loopback) ==")
    print(f"{'backend':<14} {'p50 ms':>8} {'p99 ms':>8} {'p50 / in-process':>17}")
    for name, xs in rows:
        print(f"{name:<14} {1e3 * pct(xs, 0.5):8.3f} {1e3 * pct(xs, 0.99):8.3f} {pct(xs, 0.5) / base:16.1f}x")
    ws_p50 = 1e3 * pct(rows[1][1], 0.5)
    print(f"target: WebSocket p50 <= 1 ms -> {ws_p50:.3f} ms ({'met' if ws_p50 <= 1.0 else 'NOT met'})")


def bench_pool(n_envs: int, rounds: int) -> None:
    from arlarena_envs.pools import make_pool

    env_id = "arlarena/Sokoban-v0"
    print(f"\n== pool throughput, {n_envs} Sokoban envs, {rounds} batch steps (cores here: {os.cpu_count()}) ==")
    print(f"{'backend':<24} {'env steps/s':>12} {'batch ms':>9}")
    rng = random.Random(0)
    configs = [("inprocess", {})] + [("subprocess", {"num_workers": w}) for w in (1, 2, 4)]
    for backend, kw in configs:
        with make_pool(env_id, n_envs, backend=backend, **kw) as pool:
            seeds = [i // 4 for i in range(n_envs)]  # GRPO groups of 4
            pool.reset(seeds)
            pool.step([rng.choice(ACTIONS) for _ in range(n_envs)])  # warm up
            steps, t0 = 0, time.perf_counter()
            for _ in range(rounds):
                res = pool.step([rng.choice(ACTIONS) for _ in range(n_envs)])
                steps += n_envs
                if any(r.done for r in res):
                    pool.reset(seeds)
            dt = time.perf_counter() - t0
        name = backend + (f" x{kw['num_workers']}" if kw else "")
        print(f"{name:<24} {steps / dt:12.0f} {1e3 * dt / rounds:9.2f}")


def bench_sessions(url: str, pid: int, n: int) -> None:
    import psutil

    from arlarena_envs.server.client import RemoteEnv

    env_id = "arlarena/Sokoban-v0"
    proc = psutil.Process(pid)
    rss0 = proc.memory_info().rss
    with cf.ThreadPoolExecutor(max_workers=64) as ex:
        t0 = time.perf_counter()
        envs = list(ex.map(lambda i: RemoteEnv(env_id, url=url, timeout=60), range(n)))
        list(ex.map(lambda ie: ie[1].reset_result(seed=ie[0]), enumerate(envs)))
        opened = time.perf_counter() - t0
        rss = proc.memory_info().rss
        cpu0 = proc.cpu_times()
        lat: list[float] = []

        def play(env):
            out = []
            for a in ACTIONS * 2:
                s = time.perf_counter()
                r = env.step_result(a)
                out.append(time.perf_counter() - s)
                if r.done:
                    env.reset_result(seed=1)
            return out

        t1 = time.perf_counter()
        for xs in ex.map(play, envs):
            lat += xs
        dt = time.perf_counter() - t1
        cpu1 = proc.cpu_times()
        list(ex.map(lambda e: e.close(), envs))
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    print(f"\n== sessions per core: one server process holding {n} sessions ==")
    print(f"opened + reset {n} sessions in {opened:.1f} s; server RSS {rss / 2**20:.0f} MiB "
          f"({(rss - rss0) / n / 1024:.1f} KiB per session)")
    print(f"stepping all {n} (64 client threads): {len(lat) / dt:.0f} steps/s, p50 {1e3 * pct(lat, 0.5):.2f} ms, "
          f"p99 {1e3 * pct(lat, 0.99):.2f} ms; server CPU {cpu:.2f} s = {1e3 * cpu / len(lat):.3f} ms per step")
    print(f"sessions held per core: {n} (held, all stepping; the server is one process on one core). "
          f"At one step per session every 100 ms, one core serves about {int(0.1 * len(lat) / max(cpu, 1e-9))} sessions.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--pool-envs", type=int, default=32)
    ap.add_argument("--pool-rounds", type=int, default=60)
    ap.add_argument("--sessions", type=int, default=1024)
    args = ap.parse_args()
    from arlarena_envs.pools.subprocess import ServerProcess

    srv = ServerProcess(["arlarena/Sokoban-v0"], extra_args=["--max-sessions", str(max(args.sessions, 64) + 64)])
    try:
        bench_latency(srv.url, args.steps)
        bench_sessions(srv.url, srv.pid, args.sessions)
    finally:
        srv.close()
    bench_pool(args.pool_envs, args.pool_rounds)


if __name__ == "__main__":
    main()
