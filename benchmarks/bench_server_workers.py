"""`arlarena serve --workers N`: throughput with N = 1 vs N = cores, a long-lived soak, and the
memory an idle session costs.

    python benchmarks/bench_server_workers.py throughput [--sessions 256] [--duration 15]
    python benchmarks/bench_server_workers.py --soak [--sessions 4096] [--interval 2] [--duration 60] [--idle-sessions 1024]
    python benchmarks/bench_server_workers.py memory [--sessions 1024] [--env arlarena/WebShop-v0]
    (any mode: --ws-impl websockets-sansio measures uvicorn's own WebSocket path, the old default)

The load generator (`benchmarks/lean_ws.py`: one asyncio protocol per connection, one
connection per session as `RemoteEnv` holds) runs in `--client-procs` processes, so it is not
one GIL, and it reports its own cost: client CPU per step, and how late it sent steps against
their schedule (a loaded client shows up there, not as server latency). Loopback only.
Latency is client-side (send -> reply). Server CPU per step is the CPU time of every server
process (supervisor and workers, user + system) over the measured window / steps answered.

* throughput: every session steps back to back (random Sokoban moves, reset when an episode
  ends) for `--duration` s; total steps/s and client p50/p99, for N = 1 and N = cores side by side.
* soak (`--soak`): `--sessions` sessions opened (handshake, create, reset; a bounded number at a
  time), then each steps once every `--interval` s on a fixed schedule (phases spread over the
  interval) for `--duration` s on a server with N = cores workers: sessions held, steps,
  errors, p50/p99/max latency, server RSS, CPU per step; then the memory per idle session of
  Sokoban and WebShop (`--idle-sessions` each).
* memory: RSS of all server processes before and after opening (and resetting) `--sessions`
  idle sessions of `--env`; prints the cost per idle session.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MOVES = ["up", "down", "left", "right"]
OPENING = 64  # handshakes + creates in flight per client process: a ramp, not a storm


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def window_p99(sent: list[float], lat: list[float], width: float, duration: float) -> list[float]:
    """p99 latency of the steps sent in each `width`-second window (a tail spread evenly over the
    run is queueing; one bad window is a pause somewhere)."""
    bins: list[list[float]] = [[] for _ in range(max(1, int(duration // width)))]
    for t, x in zip(sent, lat):
        bins[min(len(bins) - 1, max(0, int(t // width)))].append(x)
    return [pct(b, 0.99) for b in bins]


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _open(host: str, port: int, env_id: str, k: int, out: dict, opening: asyncio.Semaphore):
    """One session: connect, create, reset; (connection, session id) or None (counted error)."""
    from lean_ws import connect

    async with opening:
        try:
            ws = await connect(host, port, timeout=120)
            r = json.loads(await ws.request(json.dumps({"op": "create", "env_id": env_id})))
            if not r["ok"]:
                out["errors"].append("create:" + r["error"]["code"])
                ws.close()
                return None
            sid = r["result"]["session_id"]
            r = json.loads(await ws.request(json.dumps({"op": "reset", "session_id": sid, "seed": k})))
            if not r["ok"]:
                out["errors"].append("reset:" + r["error"]["code"])
                ws.close()
                return None
        except Exception as e:  # noqa: BLE001 - counted: a soak reports every failure
            out["errors"].append("open:" + type(e).__name__)
            return None
    out["opened"] += 1
    return ws, sid


async def _drive_session(ws, sid: str, k: int, mode: str, period: float, t0: float, until: float, out: dict) -> None:
    rng = random.Random(k)
    rid = 0
    due = t0 + (rng.random() * period if mode == "soak" else 0.0)  # soak: phases spread over the interval
    lat, sent, late, errors = out["lat"], out["sent"], out["late"], out["errors"]
    try:
        while True:
            now = time.time()
            if due >= until or now >= until:  # only steps sent inside the window count
                break
            if due > now:
                await asyncio.sleep(due - now)
            rid += 1
            if mode == "soak":
                late.append(max(0.0, time.time() - due))
            s = time.perf_counter()
            r = json.loads(await ws.request(json.dumps({"op": "step", "session_id": sid, "request_id": f"{k}-{rid}",
                                                        "action": rng.choice(MOVES)})))
            lat.append(time.perf_counter() - s)
            sent.append(time.time() - t0)
            if not r["ok"]:
                errors.append("step:" + r["error"]["code"])
            elif r["result"]["terminated"] or r["result"]["truncated"]:
                r = json.loads(await ws.request(json.dumps({"op": "reset", "session_id": sid, "seed": k + rid})))
                if not r["ok"]:
                    errors.append("reset:" + r["error"]["code"])
            due = due + period if mode == "soak" else time.time()
    except Exception as e:  # noqa: BLE001
        errors.append("step:" + type(e).__name__)
    finally:
        ws.close()


def _client_proc(url: str, env_id: str, ks: list[int], mode: str, period: float, ready_q, go, clock, q) -> None:
    from arlarena_envs.server.guard import raise_fd_limit

    raise_fd_limit()
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    out: dict = {"lat": [], "sent": [], "late": [], "errors": [], "opened": 0}

    async def main() -> None:
        opening = asyncio.Semaphore(OPENING)
        opened = await asyncio.gather(*(_open(host, int(port), env_id, k, out, opening) for k in ks))
        ready_q.put(out["opened"])
        while not go.is_set():  # the parent starts the clock once every process has opened
            await asyncio.sleep(0.05)
        t0, until = clock[0], clock[1]
        await asyncio.sleep(max(0.0, t0 - time.time()))
        # the load generator's own GC pauses (thousands of connections) would show up as
        # server latency: no collections in the window (the server runs with its defaults)
        gc.collect()
        gc.disable()
        c0 = _cpu_s()
        tasks = [asyncio.ensure_future(_drive_session(o[0], o[1], k, mode, period, t0, until, out)) for k, o in zip(ks, opened) if o]
        await asyncio.sleep(max(0.0, until - time.time()))
        out["cpu_s"] = _cpu_s() - c0
        await asyncio.gather(*tasks)

    run_loop(main())
    q.put(out)


def run_loop(coro) -> None:
    """Run the load generator on the loop the server uses (--loop; uvloop when installed for auto)."""
    choice = os.environ.get("ARLARENA_BENCH_LOOP", "auto")
    if choice != "asyncio":
        try:
            import uvloop

            uvloop.run(coro)
            return
        except ImportError:
            if choice == "uvloop":
                raise
    asyncio.run(coro)


def _tree(pid: int):
    import psutil

    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def server_rss(srv) -> int:
    return sum(x.memory_info().rss for x in _tree(srv.pid))


def server_cpu_s(procs) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:  # noqa: BLE001 - a worker gone: its time is lost with it
            pass
    return total


def drive(srv, env_id: str, n: int, mode: str, period: float, duration: float, procs: int, open_s: float) -> dict:
    """Open n sessions (over `procs` processes), then step them for `duration` s."""
    ctx = mp.get_context("spawn")
    q, ready_q, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    clock = ctx.Array("d", 2)
    ps = [ctx.Process(target=_client_proc, args=(srv.url, env_id, list(range(p, n, procs)), mode, period, ready_q, go, clock, q))
          for p in range(min(procs, n))]
    t_open = time.time()
    for p in ps:
        p.start()
    opened = sum(ready_q.get(timeout=open_s) for _ in ps)
    open_wall = time.time() - t_open
    server = _tree(srv.pid)
    t0 = time.time() + 0.5
    clock[0], clock[1] = t0, t0 + duration
    go.set()
    time.sleep(max(0.0, t0 - time.time()))
    c0 = server_cpu_s(server)
    time.sleep(max(0.0, t0 + duration - time.time()))
    c1 = server_cpu_s(server)
    rss = server_rss(srv)
    outs = [q.get(timeout=duration + 300) for _ in ps]
    for p in ps:
        p.join(timeout=30)
    lat = [x for o in outs for x in o["lat"]]
    return {"lat": lat, "sent": [x for o in outs for x in o["sent"]], "late": [x for o in outs for x in o["late"]], "errors": [x for o in outs for x in o["errors"]],
            "opened": opened, "open_s": open_wall, "duration": duration, "server_cpu_s": c1 - c0,
            "client_cpu_s": sum(o.get("cpu_s", 0.0) for o in outs), "rss": rss}


def start(env_id: str, workers: int, max_sessions: int, ws_impl: str):
    from arlarena_envs.pools.subprocess import ServerProcess

    return ServerProcess([env_id], start_timeout_s=300, extra_args=["--workers", str(workers), "--max-sessions", str(max_sessions),
                                                                   "--max-connections", str(max_sessions + 512), "--ws-impl", ws_impl,
                                                                   "--loop", os.environ.get("ARLARENA_BENCH_LOOP", "auto")])


def idle_memory(env_id: str, n: int, workers: int, ws_impl: str) -> tuple[int, int]:
    """Server RSS (all processes) before and after opening and resetting n idle sessions."""
    from arlarena_envs.server.guard import raise_fd_limit

    raise_fd_limit()
    srv = start(env_id, workers, n + 64, ws_impl)
    try:
        host, port = srv.url.split("://", 1)[1].rsplit(":", 1)

        async def open_many(count: int, base: int) -> list:
            out: dict = {"errors": [], "opened": 0}
            sem = asyncio.Semaphore(OPENING)
            got = await asyncio.gather(*(_open(host, int(port), env_id, base + k, out, sem) for k in range(count)))
            if out["errors"]:
                print(f"  errors while opening: {sorted(set(out['errors']))[:5]}")
            return [g for g in got if g]

        async def run() -> tuple[int, int]:
            # a few warm sessions first (every worker loads the data all sessions share, e.g. a
            # catalogue, before the baseline): the figure is what one more session costs
            warm = await open_many(8 * workers, 10**6)
            await asyncio.sleep(2)
            rss0 = server_rss(srv)
            held = await open_many(n, 0)
            await asyncio.sleep(2)
            rss1 = server_rss(srv)
            if len(held) != n:
                print(f"  only {len(held)}/{n} sessions opened")
            for ws, _ in held + warm:
                ws.close()
            return rss0, rss1

        return asyncio.run(run())
    finally:
        srv.close()


def report_memory(env_id: str, n: int, workers: int, ws_impl: str) -> None:
    rss0, rss1 = idle_memory(env_id, n, workers, ws_impl)
    print(f"idle sessions of {env_id}: {n} (reset, connection open) over {workers} workers: server RSS "
          f"{rss0 / 2**20:.0f} -> {rss1 / 2**20:.0f} MiB: {(rss1 - rss0) / n / 1024:.1f} KiB per idle session", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", choices=["throughput", "soak", "memory"], default=None)
    ap.add_argument("--soak", action="store_true", help="the soak (same as mode 'soak')")
    ap.add_argument("--sessions", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--interval", "--period", dest="period", type=float, default=2.0, help="soak: seconds between a session's steps")
    ap.add_argument("--idle-sessions", type=int, default=1024, help="soak: idle sessions per env for the memory figures (0: skip)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="N for 'cores' (default: this machine's cores)")
    ap.add_argument("--client-procs", type=int, default=2)
    ap.add_argument("--open-s", type=float, default=600.0, help="seconds allowed to open the sessions")
    ap.add_argument("--env", default="arlarena/Sokoban-v0")
    ap.add_argument("--ws-impl", default="fast", choices=["fast", "websockets-sansio", "websockets"])
    ap.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"],
                    help="event loop of the server and the load generator (auto: uvloop when installed)")
    args = ap.parse_args()
    os.environ["ARLARENA_BENCH_LOOP"] = args.loop  # the server's --loop and the client processes' loop
    mode = "soak" if args.soak else args.mode
    if mode is None:
        ap.error("name a mode (throughput, soak, memory) or pass --soak")
    cores = os.cpu_count()
    print(f"cores here: {cores}, load avg {os.getloadavg()[0]:.1f}, server --ws-impl {args.ws_impl} --loop {args.loop}, "
          f"{args.client_procs} client processes")

    if mode == "throughput":
        n, dur = args.sessions or 256, args.duration or 15.0
        print(f"\n== {n} sessions stepping back to back, {dur:g} s, {args.env} ==")
        print(f"{'workers':>8} {'steps/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'server us/step':>15} {'client us/step':>15}")
        rows = []
        for w in (1, args.workers):
            srv = start(args.env, w, n + 64, args.ws_impl)
            try:
                r = drive(srv, args.env, n, "throughput", 0.0, dur, args.client_procs, args.open_s)
            finally:
                srv.close()
            steps = len(r["lat"])
            rate = steps / dur
            rows.append(rate)
            print(f"{w:>8} {rate:9.0f} {1e3 * pct(r['lat'], 0.5):8.1f} {1e3 * pct(r['lat'], 0.99):8.1f} {len(r['errors']):7d} "
                  f"{1e6 * r['server_cpu_s'] / max(steps, 1):15.0f} {1e6 * r['client_cpu_s'] / max(steps, 1):15.0f}", flush=True)
            if r["errors"]:
                print(f"         errors: {sorted(set(r['errors']))[:5]}")
        print(f"steps/s ratio N={args.workers} / N=1: {rows[1] / rows[0]:.2f}x")
    elif mode == "soak":
        n, dur = args.sessions or 4096, args.duration or 60.0
        srv = start(args.env, args.workers, n // args.workers + 512, args.ws_impl)
        try:
            r = drive(srv, args.env, n, "soak", args.period, dur, args.client_procs, args.open_s)
        finally:
            srv.close()
        steps, lat = len(r["lat"]), r["lat"]
        print(f"\n== soak: {n} sessions of {args.env}, each stepping every {args.period:g} s, {dur:g} s, {args.workers} workers ==")
        print(f"sessions held: {r['opened']}/{n} (opened in {r['open_s']:.0f} s)")
        print(f"steps sent in the window: {steps} ({steps / dur:.0f}/s; the schedule asks {n / args.period:.0f}/s)")
        print(f"errors: {len(r['errors'])} {sorted(set(r['errors']))[:5]}")
        print(f"latency (client, send -> reply): p50 {1e3 * pct(lat, 0.5):.1f} ms, p99 {1e3 * pct(lat, 0.99):.1f} ms, "
              f"max {1e3 * max(lat, default=float('nan')):.1f} ms (target p99 < 50 ms: "
              f"{'met' if lat and pct(lat, 0.99) < 0.05 else 'NOT met'})")
        print(f"p99 by 5 s window of the run (ms): {' '.join(f'{1e3 * w:.0f}' for w in window_p99(r['sent'], lat, 5.0, dur))}")
        print(f"client lateness (step sent after its scheduled time): p50 {1e3 * pct(r['late'], 0.5):.1f} ms, "
              f"p99 {1e3 * pct(r['late'], 0.99):.1f} ms")
        print(f"CPU per step: server {1e6 * r['server_cpu_s'] / max(steps, 1):.0f} us ({r['server_cpu_s'] / dur:.2f} cores), "
              f"client {1e6 * r['client_cpu_s'] / max(steps, 1):.0f} us ({r['client_cpu_s'] / dur:.2f} cores); "
              f"load avg now {os.getloadavg()[0]:.1f}")
        print(f"server RSS with {r['opened']} sessions held: {r['rss'] / 2**20:.0f} MiB", flush=True)
        if args.idle_sessions:
            print(f"\n== memory per idle session ({args.workers} workers) ==")
            for env_id in ("arlarena/Sokoban-v0", "arlarena/WebShop-v0"):
                report_memory(env_id, args.idle_sessions, args.workers, args.ws_impl)
    else:
        print()
        report_memory(args.env, args.sessions or 1024, args.workers, args.ws_impl)


if __name__ == "__main__":
    main()
