"""Container benchmark: start time of an env server container (run -> healthy), and p50/p99 step
latency container vs in-process for Sokoban (RemoteEnv over loopback WebSocket to the port
Docker publishes on 127.0.0.1).

    python benchmarks/bench_docker.py [--steps 3000] [--starts 3]

Needs a Docker engine and the image (`arlarena containers build --family sokoban`; built here
when missing). Containers carry the pool's label and are removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_server import latency, pct  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--starts", type=int, default=3, help="containers started one after another for the start time")
    args = ap.parse_args()

    import secrets

    import arlarena_envs
    from arlarena_envs.containers import docker_client, ensure_image
    from arlarena_envs.pools.docker import ContainerWorker, remove_pool_containers
    from arlarena_envs.server.client import RemoteEnv

    env_id = "arlarena/Sokoban-v0"
    client = docker_client()
    t0 = time.perf_counter()
    image = ensure_image(env_id)
    print(f"image {image} ready in {time.perf_counter() - t0:.1f} s (0 if it was built already)")
    pool_id = "bench-" + secrets.token_hex(4)
    token = secrets.token_urlsafe(16)
    try:
        starts = []
        worker = None
        for _ in range(args.starts):
            if worker is not None:
                worker.close()
            worker = ContainerWorker(client, image, [env_id], pool_id, token=token)
            starts.append(worker.start_s)
        print(f"\n== container start (docker run -> /health answers), {args.starts} starts ==")
        print(f"min {min(starts):.2f} s, median {sorted(starts)[len(starts) // 2]:.2f} s, max {max(starts):.2f} s")

        local = arlarena_envs.make(env_id).unwrapped
        remote = RemoteEnv(env_id, url=worker.url, token=token)
        latency(local, 200)
        latency(remote, 200)
        rows = [("in-process", latency(local, args.steps)), ("container ws", latency(remote, args.steps))]
        remote.close()
        base = pct(rows[0][1], 0.5)
        print(f"\n== step latency, Sokoban, {args.steps} steps ==")
        print(f"{'backend':<14} {'p50 ms':>8} {'p99 ms':>8} {'p50 / in-process':>17}")
        for name, xs in rows:
            print(f"{name:<14} {1e3 * pct(xs, 0.5):8.3f} {1e3 * pct(xs, 0.99):8.3f} {pct(xs, 0.5) / base:16.1f}x")
    finally:
        n = remove_pool_containers(client, pool_id)
        print(f"\nremoved {n} container(s) of this benchmark")


if __name__ == "__main__":
    main()
