"""`arlarena serve --workers N`: throughput with N = 1 vs N = cores, a long-lived soak, and the
memory an idle session costs.

    python benchmarks/bench_server_workers.py throughput [--sessions 256] [--duration 15]
    python benchmarks/bench_server_workers.py soak [--sessions 4096] [--period 2] [--duration 60]
    python benchmarks/bench_server_workers.py memory [--sessions 1024] [--env arlarena/WebShop-v0]

Clients are asyncio WebSocket clients (one connection per session, as `RemoteEnv` uses) spread
over `--client-procs` processes, so the client side is not one GIL. Loopback only. Latency is
client-side (send -> reply), so it includes queueing in the server and the client's own loop.

* throughput: every session steps back to back (random Sokoban moves, reset when an episode
  ends) for `--duration` s; total steps/s and client p50/p99, for N = 1 and N = cores side by side.
* soak: `--sessions` sessions held open on a server with N = cores workers, each stepping once
  every `--period` s (phases staggered), for `--duration` s: errors, p50/p99, sessions held.
* memory: RSS of all server processes before and after opening (and resetting) `--sessions`
  idle sessions of `--env`; prints the cost per idle session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MOVES = ["up", "down", "left", "right"]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def _session(url: str, env_id: str, k: int, mode: str, period: float, until: float, start_at: float, out: dict,
                   opening: asyncio.Semaphore) -> None:
    from websockets.asyncio.client import connect

    rng = random.Random(k)
    rid = 0

    async def call(ws, op: str, **fields) -> dict:
        nonlocal rid
        rid += 1
        await ws.send(json.dumps({"op": op, "request_id": f"{k}-{rid}", **fields}))
        return json.loads(await ws.recv())

    ws = None
    try:
        async with opening:  # a bounded number of handshakes at a time: a ramp, not a storm
            ws = await connect(url.replace("http://", "ws://") + "/ws", max_size=None, compression=None, open_timeout=120,
                               ping_interval=None)
            r = await call(ws, "create", env_id=env_id)
            if not r["ok"]:
                out["errors"].append(r["error"]["code"])
                return
            sid = r["result"]["session_id"]
            await call(ws, "reset", session_id=sid, seed=k)
        out["opened"] += 1
        await asyncio.sleep(max(0.0, start_at - time.time()))
        if mode == "soak":  # a staggered phase: sessions do not all step at once
            await asyncio.sleep(rng.random() * period)
        while time.time() < until:
            t0 = time.perf_counter()
            r = await call(ws, "step", session_id=sid, action=rng.choice(MOVES))
            out["lat"].append(time.perf_counter() - t0)
            if not r["ok"]:
                out["errors"].append(r["error"]["code"])
            elif r["result"]["terminated"] or r["result"]["truncated"]:
                await call(ws, "reset", session_id=sid, seed=k + rid)
            if mode == "soak":
                await asyncio.sleep(max(0.0, period - (time.perf_counter() - t0)))
    except Exception as e:  # noqa: BLE001 - counted: a soak reports every failure
        out["errors"].append(type(e).__name__)
    finally:
        if ws is not None:
            await ws.close()


def _client_proc(url: str, env_id: str, ks: list[int], mode: str, period: float, until: float, start_at: float, q) -> None:
    out = {"lat": [], "errors": [], "opened": 0}

    async def main() -> None:
        opening = asyncio.Semaphore(32)
        await asyncio.gather(*(_session(url, env_id, k, mode, period, until, start_at, out, opening) for k in ks))

    asyncio.run(main())
    q.put(out)


def drive(url: str, env_id: str, n: int, mode: str, period: float, duration: float, procs: int, open_s: float) -> dict:
    """Open n sessions (over `procs` processes), then step them for `duration` s."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    start_at = time.time() + open_s
    until = start_at + duration
    ps = [ctx.Process(target=_client_proc, args=(url, env_id, list(range(p, n, procs)), mode, period, until, start_at, q)) for p in range(procs)]
    for p in ps:
        p.start()
    outs = [q.get(timeout=open_s + duration + 300) for _ in ps]
    for p in ps:
        p.join(timeout=30)
    lat = [x for o in outs for x in o["lat"]]
    errors = [x for o in outs for x in o["errors"]]
    return {"lat": lat, "errors": errors, "opened": sum(o["opened"] for o in outs), "duration": duration}


def server_rss(srv) -> int:
    import psutil

    p = psutil.Process(srv.pid)
    return sum(x.memory_info().rss for x in [p, *p.children(recursive=True)])


def start(env_id: str, workers: int, max_sessions: int):
    from arlarena_envs.pools.subprocess import ServerProcess

    return ServerProcess([env_id], start_timeout_s=300, extra_args=["--workers", str(workers), "--max-sessions", str(max_sessions),
                                                                   "--max-connections", str(max_sessions + 512)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["throughput", "soak", "memory"])
    ap.add_argument("--sessions", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--period", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="N for 'cores' (default: this machine's cores)")
    ap.add_argument("--client-procs", type=int, default=4)
    ap.add_argument("--open-s", type=float, default=None, help="seconds allowed to open the sessions before the clock starts")
    ap.add_argument("--env", default="arlarena/Sokoban-v0")
    args = ap.parse_args()
    cores = os.cpu_count()
    print(f"cores here: {cores}, load avg {os.getloadavg()[0]:.1f}")

    if args.mode == "throughput":
        n, dur = args.sessions or 256, args.duration or 15.0
        print(f"\n== {n} sessions stepping back to back, {dur:g} s, {args.env} ==")
        print(f"{'workers':>8} {'steps/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        rows = []
        for w in (1, args.workers):
            srv = start(args.env, w, n + 64)
            try:
                r = drive(srv.url, args.env, n, "throughput", 0.0, dur, args.client_procs, args.open_s or 60.0)
            finally:
                srv.close()
            rate = len(r["lat"]) / dur
            rows.append(rate)
            print(f"{w:>8} {rate:9.0f} {1e3 * pct(r['lat'], 0.5):8.1f} {1e3 * pct(r['lat'], 0.99):8.1f} {len(r['errors']):7d}", flush=True)
            if r["errors"]:
                print(f"         errors: {sorted(set(r['errors']))[:5]}")
        print(f"steps/s ratio N={args.workers} / N=1: {rows[1] / rows[0]:.2f}x")
    elif args.mode == "soak":
        n, dur = args.sessions or 4096, args.duration or 60.0
        srv = start(args.env, args.workers, n // args.workers + 512)
        try:
            r = drive(srv.url, args.env, n, "soak", args.period, dur, args.client_procs, args.open_s or 240.0)
            rss = server_rss(srv)
        finally:
            srv.close()
        print(f"\n== soak: {n} sessions of {args.env}, each stepping every {args.period:g} s, {dur:g} s, {args.workers} workers ==")
        print(f"held {r['opened']}/{n}; steps {len(r['lat'])} ({len(r['lat']) / dur:.0f}/s; expected {n / args.period:.0f}/s); "
              f"errors {len(r['errors'])} {sorted(set(r['errors']))[:5]}; p50 {1e3 * pct(r['lat'], 0.5):.1f} ms, "
              f"p99 {1e3 * pct(r['lat'], 0.99):.1f} ms; server RSS {rss / 2**20:.0f} MiB")
    else:
        n = args.sessions or 1024
        srv = start(args.env, args.workers, n + 64)
        try:
            # one warm session per worker first: the data every session shares (a catalogue)
            # is loaded before the baseline, so the figure is what one more session costs
            drive(srv.url, args.env, 4 * args.workers, "throughput", 0.0, 0.5, 1, args.open_s or 20.0)
            time.sleep(2)
            rss0 = server_rss(srv)
            from websockets.sync.client import connect

            conns = []
            for k in range(n):
                ws = connect(srv.url.replace("http://", "ws://") + "/ws", max_size=None, open_timeout=120)
                ws.send(json.dumps({"op": "create", "env_id": args.env}))
                sid = json.loads(ws.recv())["result"]["session_id"]
                ws.send(json.dumps({"op": "reset", "session_id": sid, "seed": k}))
                ws.recv()
                conns.append(ws)
            time.sleep(2)
            rss1 = server_rss(srv)
            for ws in conns:
                ws.close()
        finally:
            srv.close()
        print(f"\n== memory: {n} idle sessions of {args.env} (reset, connection open) over {args.workers} workers ==")
        print(f"server RSS {rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB: {(rss1 - rss0) / n / 1024:.1f} KiB per idle session")


if __name__ == "__main__":
    main()
