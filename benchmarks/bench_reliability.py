"""Reliability benchmark: bad inputs per component, idle connections, long runs, recoveries.

    python benchmarks/bench_reliability.py            # everything, about 2-3 minutes
    python benchmarks/bench_reliability.py --quick    # smaller counts (a smoke run)

Prints four tables:

1. bad inputs tried / crashes / hangs per component. A *crash* is an input that made the
   component fail other than by its typed error (an exception escaping, a non-JSON or untyped
   reply, a dropped connection, a dead server); a *hang* is an input not answered within the
   probe's deadline.
2. a control client's step latency (p50/p99) while 2,000 idle or half-open connections are held.
3. RSS and open-fd growth of a server over 10,000 reset+step cycles (sent as batch frames).
4. recoveries: SIGKILLed pool workers, a paused (SIGSTOPped) worker, a killed server (client
   resume), reaped sessions.

All traffic stays on 127.0.0.1 (servers are `arlarena serve` subprocesses on free ports).

Probe interface (extensible): a probe is a function `probe(quick: bool) -> list[ProbeResult]`
(or one ProbeResult). `SERVER_PROBES` below are this file's; a module
`benchmarks/reliability_probes_envs.py`, if present, is imported and its `PROBES` list (same
signature) is run too (envs, CLI, leaderboard, stability readers). A probe counts its own
inputs and outcomes and never raises for a bad input; an exception escaping a probe is reported
as one crash of that probe's component.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOKOBAN = "arlarena/Sokoban-v0"


@dataclass
class ProbeResult:
    """One component's tally: `tried` bad inputs, of which `crashes` and `hangs` (see module doc)."""

    component: str
    tried: int
    crashes: int
    hangs: int
    notes: str = ""


Probe = Callable[[bool], "list[ProbeResult] | ProbeResult"]


# ------------------------------------------------------------------------------ bad inputs


def _bad_frames(n: int, seed: int = 0) -> list[str | bytes]:
    """Hostile or careless frames: broken JSON, deep nesting, wrong types, huge and odd unicode."""
    rng = random.Random(seed)
    sid = "SID"
    fixed: list[Any] = [
        "", "{", "[" * 5000, '{"a":' * 3000, b"\xff\xfe\x00", "null", "[]", '"str"', "1e999999",
        {"op": "step"}, {"op": "fly"}, {"op": "batch", "requests": [{"op": "batch"}] * 10},
        {"op": "create", "env_id": SOKOBAN, "env_kwargs": {"cache_dir": "/tmp/x"}},
        {"op": "create", "env_id": SOKOBAN, "env_kwargs": {"search_depth": 10**9}},
        {"op": "create", "env_id": SOKOBAN, "env_kwargs": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
        {"op": "create", "env_id": "../../etc/passwd"},
        {"op": "reset", "session_id": sid, "seed": "1"}, {"op": "reset", "session_id": sid, "seed": True},
        {"op": "reset", "session_id": sid, "seed": 1.0}, {"op": "reset", "session_id": sid, "seed": "1_0"},
        {"op": "reset", "session_id": sid, "seed": 2**80}, {"op": "reset", "session_id": sid, "options": {"task_index": 10**12}},
        {"op": "step", "session_id": sid, "action": "x" * 300_000},
        {"op": "step", "session_id": sid, "action": {"action": "x" * 300_000, "status": "ok", "format_valid": True}},
        {"op": "step", "session_id": sid, "action": "search[\ud800 x]"},
        {"op": "step", "session_id": sid, "action": "\x00" * 100},
        {"op": "step", "session_id": sid, "action": "up", "request_id": "r" * 10_000},
        {"op": "close", "session_id": "x" * 10_000},
    ]
    out: list[str | bytes] = []
    for f in fixed:
        out.append(f if isinstance(f, (str, bytes)) else json.dumps(f).replace("SID", sid))
    alphabet = ['{', '}', '[', ']', '"', ':', ',', 'a', '1', '\\', 'u', 'd', '8', '0', ' ', '\ud800', 'é', '\x00']
    while len(out) < n:
        kind = rng.random()
        if kind < 0.4:
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 200))))
        elif kind < 0.7:
            base = {"op": rng.choice(["create", "reset", "step", "close", "oracle", "prompt", "batch"]), "session_id": sid}
            key = rng.choice(["seed", "action", "options", "env_kwargs", "request_id", "requests", "env_id"])
            base[key] = rng.choice([None, True, -1, 1.5, "x" * rng.randint(0, 5000), [1] * rng.randint(0, 50), {"k": "v"}, "\ud800"])
            out.append(json.dumps(base))
        else:
            d = rng.randint(1, 4000)
            out.append("[" * d + "]" * rng.randint(0, d))
    return out[:n]


def probe_session_manager(quick: bool) -> list[ProbeResult]:
    """The request handler in-process (what every transport calls)."""
    from arlarena_envs.server.app import ServerConfig, SessionManager

    mgr = SessionManager(ServerConfig(env_ids=[SOKOBAN]))
    _, body = mgr.handle_obj({"op": "create", "env_id": SOKOBAN})
    sid = json.loads(body)["result"]["session_id"]
    mgr.handle_obj({"op": "reset", "session_id": sid, "seed": 1})
    frames = _bad_frames(400 if quick else 3000)
    crashes = hangs = 0
    for f in frames:
        f = f.replace("SID", sid) if isinstance(f, str) else f
        t0 = time.monotonic()
        try:
            status, body = mgr.handle_text(f)
            reply = json.loads(body)
            if not isinstance(reply, dict) or (not reply.get("ok") and "code" not in reply.get("error", {})):
                crashes += 1
        except Exception:  # noqa: BLE001 - anything escaping is a crash
            crashes += 1
        if time.monotonic() - t0 > 2.0:
            hangs += 1
    return [ProbeResult("server: request handler", len(frames), crashes, hangs)]


def probe_server_transports(quick: bool) -> list[ProbeResult]:
    """The same frames over a live server: HTTP bodies and WebSocket frames."""
    import httpx
    from websockets.sync.client import connect

    from arlarena_envs.pools.subprocess import ServerProcess

    srv = ServerProcess([SOKOBAN])
    results = []
    try:
        with httpx.Client(base_url=srv.url, timeout=5) as http:
            sid = http.post("/sessions", json={"env_id": SOKOBAN}).json()["result"]["session_id"]
            http.post(f"/sessions/{sid}/reset", json={"seed": 1})
            frames = _bad_frames(150 if quick else 600, seed=1)
            crashes = hangs = 0
            # what a client's socket can carry: a lone surrogate goes out as its (invalid) UTF-8 bytes
            wire = [(f.replace("SID", sid).encode("utf-8", "surrogatepass") if isinstance(f, str) else f) for f in frames]
            for body in wire:
                try:
                    r = http.post(f"/sessions/{sid}/step", content=body)
                    reply = r.json()
                    if reply.get("ok") is not True and "code" not in (reply.get("error") or {}):
                        crashes += 1
                except httpx.TimeoutException:
                    hangs += 1
                except Exception:  # noqa: BLE001
                    crashes += 1
            results.append(ProbeResult("server: HTTP", len(frames), crashes + (0 if srv.alive() else 1), hangs))
            crashes = hangs = 0
            ws = connect(srv.url.replace("http", "ws") + "/ws", max_size=None)
            for body in wire:
                try:
                    try:
                        ws.send(body.decode("utf-8"))  # a text frame where the bytes allow one
                    except UnicodeDecodeError:
                        ws.send(body)
                    reply = json.loads(ws.recv(timeout=5))
                    if reply.get("ok") is not True and "code" not in (reply.get("error") or {}):
                        crashes += 1
                except TimeoutError:
                    hangs += 1
                    ws.close()
                    ws = connect(srv.url.replace("http", "ws") + "/ws", max_size=None)
                except Exception:  # noqa: BLE001 - a dropped connection is a crash
                    crashes += 1
                    ws = connect(srv.url.replace("http", "ws") + "/ws", max_size=None)
            ws.close()
            results.append(ProbeResult("server: WebSocket", len(frames), crashes + (0 if srv.alive() else 1), hangs))
    finally:
        srv.close()
    return results


SERVER_PROBES: list[Probe] = [probe_session_manager, probe_server_transports]


def _env_probes() -> list[Probe]:
    path = Path(__file__).with_name("reliability_probes_envs.py")
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location("reliability_probes_envs", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(getattr(mod, "PROBES", []))


def run_probes(probes: list[Probe], quick: bool) -> list[ProbeResult]:
    out: list[ProbeResult] = []
    for probe in probes:
        try:
            got = probe(quick)
            out += [got] if isinstance(got, ProbeResult) else list(got)
        except Exception as e:  # noqa: BLE001 - a probe that blew up counts as a crash
            out.append(ProbeResult(getattr(probe, "__name__", "probe"), 1, 1, 0, f"probe raised {type(e).__name__}: {e}"))
    return out


# ------------------------------------------------------------------------------ load and growth


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def idle_connections(n_idle: int, steps: int) -> dict[str, float]:
    """`n_idle` connections held open (half idle, half with half a request head) while one
    RemoteEnv steps `steps` times; its p50/p99 step latency, and without the idle load."""
    import resource

    import httpx

    from arlarena_envs.pools.subprocess import ServerProcess
    from arlarena_envs.server.client import RemoteEnv

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n_idle + 1024)), hard))
    srv = ServerProcess([SOKOBAN])
    port = int(srv.url.rsplit(":", 1)[1])
    held: list[socket.socket] = []
    try:
        def play(env: Any) -> list[float]:
            lat = []
            env.reset_result(seed=0)
            for k in range(steps):
                t0 = time.perf_counter()
                r = env.step_result(["up", "left", "down", "right"][k % 4])
                lat.append(time.perf_counter() - t0)
                if r.done:
                    env.reset_result(seed=k)
            return lat

        env = RemoteEnv(SOKOBAN, url=srv.url, max_steps=1000)
        base = play(env)
        for k in range(n_idle):
            s = socket.create_connection(("127.0.0.1", port))
            if k % 2:
                s.sendall(b"POST /sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
            held.append(s)
        loaded = play(env)
        health = httpx.get(srv.url + "/health", timeout=5).status_code
        env.close()
        return {
            "idle": n_idle, "steps": steps, "p50_ms": 1e3 * _pct(loaded, 0.5), "p99_ms": 1e3 * _pct(loaded, 0.99),
            "base_p50_ms": 1e3 * _pct(base, 0.5), "base_p99_ms": 1e3 * _pct(base, 0.99), "health": health,
        }
    finally:
        for s in held:
            s.close()
        srv.close()


def growth(cycles: int, per_frame: int = 10) -> dict[str, float]:
    """RSS and open fds of a server before/after `cycles` reset+step cycles. The cycles go out
    as batch frames of `per_frame` sessions (reset then step each: the server does every reset
    and step, the wire carries 1/per_frame of the round trips); the sessions are closed and new
    ones created every 100 cycles, so leaked sessions or sockets would show."""
    import psutil

    from arlarena_envs.pools.subprocess import ServerProcess
    from arlarena_envs.server.client import ServerChannel

    srv = ServerProcess([SOKOBAN])
    chan = ServerChannel(srv.url)
    try:
        proc = psutil.Process(srv.pid)

        def open_sessions() -> list[str]:
            return [chan.call("create", {"env_id": SOKOBAN})["session_id"] for _ in range(per_frame)]

        def run(n: int, first: int) -> None:
            sids: list[str] = []
            for k in range(first, first + n, per_frame):
                if (k - first) % 100 == 0:
                    for sid in sids:
                        chan.call("close", {"session_id": sid})
                    sids = open_sessions()
                items = []
                for j, sid in enumerate(sids):
                    items.append({"op": "reset", "session_id": sid, "seed": k + j, "request_id": chan.next_request_id()})
                    items.append({"op": "step", "session_id": sid, "action": "left", "request_id": chan.next_request_id()})
                replies = chan.call("batch", {"requests": items})["replies"]
                bad = [r for r in replies if not r["ok"]]
                if bad:
                    raise RuntimeError(f"growth run: {bad[0]['error']}")
            for sid in sids:
                chan.call("close", {"session_id": sid})

        run(1000, 0)  # warm-up: caches and allocator settle
        rss0, fds0 = proc.memory_info().rss, proc.num_fds()
        t0 = time.monotonic()
        half = cycles // 2 // 100 * 100
        run(half, 10_000)
        rss_half = proc.memory_info().rss
        run(cycles - half, 10_000 + half)
        seconds = time.monotonic() - t0
        time.sleep(0.5)
        rss1, fds1 = proc.memory_info().rss, proc.num_fds()
        return {
            "cycles": cycles, "seconds": seconds, "rss_mb": (rss1 - rss0) / 2**20, "fds": fds1 - fds0, "rss_end_mb": rss1 / 2**20,
            "rss_second_half_mb": (rss1 - rss_half) / 2**20,
        }
    finally:
        chan.close()
        srv.close()


# ------------------------------------------------------------------------------ recoveries


def recoveries(kills: int) -> list[tuple[str, int, int]]:
    """(fault, injected, recovered): a recovery = the affected envs come back truncated with a
    reason (pools) or the lost request is settled (client), and the next episode runs."""
    import httpx

    from arlarena_envs.errors import ServerLostError
    from arlarena_envs.pools import make_pool
    from arlarena_envs.pools.subprocess import ServerProcess
    from arlarena_envs.server.client import RemoteEnv

    rows = []
    ok = 0
    with make_pool(SOKOBAN, 4, backend="subprocess", num_workers=2) as pool:
        for k in range(kills):
            pool.reset([k] * 4)
            pool.workers[k % 2].kill()  # SIGKILL
            got = pool.step(["up"] * 4)
            lost = [i for i in range(4) if pool.assignment[i] == k % 2]
            good = all(got[i].truncated and got[i].info.extra.get("truncated_reason") for i in lost)
            pool.reset([k] * 4)  # the next episode runs on the restarted worker
            good = good and all(r.observation.step == 1 and not r.truncated for r in pool.step(["up"] * 4))
            ok += bool(good)
    rows.append(("SIGKILLed pool worker", kills, ok))

    import signal
    import threading

    ok = 0
    with make_pool(SOKOBAN, 2, backend="subprocess", num_workers=1, client_kwargs={"timeout": 1.0, "retries": 0}) as pool, make_pool(SOKOBAN, 2) as ref:
        for k in range(max(1, kills // 2)):
            same = pool.reset([k, k + 1]) == ref.reset([k, k + 1])
            os.kill(pool.workers[0].pid, signal.SIGSTOP)
            threading.Timer(2.0, os.kill, (pool.workers[0].pid, signal.SIGCONT)).start()
            restarts = pool.restarts
            same = same and pool.step(["up", "left"]) == ref.step(["up", "left"]) and pool.restarts == restarts
            ok += bool(same)
    rows.append(("paused worker (SIGSTOP 2 s) resumed, steps once", max(1, kills // 2), ok))

    ok = 0
    srv = ServerProcess([SOKOBAN])
    try:
        for k in range(kills):
            env = RemoteEnv(SOKOBAN, url=srv.url, retries=0)
            env.reset_result(seed=k)
            srv.kill()
            try:
                env.step_result("up")
            except ServerLostError as e:
                srv.restart()
                env.channel._transport.close()
                env.channel._transport.url = srv.url.replace("http://", "ws://") + "/ws"
                try:
                    env.resume(e, timeout_s=10)
                except ServerLostError:  # restarted without the session: reported, a new session runs
                    fresh = RemoteEnv(SOKOBAN, url=srv.url)
                    ok += fresh.reset_result(seed=k)[0].step == 0
                    fresh.close()
            env._closed = True
            env.channel.close()
    finally:
        srv.close()
    rows.append(("killed server (client resume + new session)", kills, ok))

    ok = 0
    with make_pool(SOKOBAN, 2, backend="subprocess", num_workers=1, server_args=["--idle-timeout", "1"]) as pool:
        url = pool.workers[0].url
        for k in range(max(1, kills // 2)):
            pool.reset([k, k])
            before = httpx.get(url + "/metrics").json()["sessions_reaped_total"]
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and httpx.get(url + "/metrics").json()["sessions_reaped_total"] < before + 2:
                time.sleep(0.1)
            got = pool.step(["up", "up"])
            good = all(r.truncated and "reaper" in r.info.extra.get("truncated_reason", "") for r in got)
            good = good and pool.reset([k, k])[0][0].step == 0
            ok += bool(good)
        rows.append(("sessions reaped under a pool", max(1, kills // 2), ok))
    return rows


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # websockets: reconnects outside a with block
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    p.add_argument("--idle", type=int, default=2000, help="idle connections held in the latency check")
    p.add_argument("--cycles", type=int, default=10_000, help="reset+step cycles in the growth check")
    args = p.parse_args(argv)
    quick = args.quick
    t_start = time.monotonic()

    results = run_probes(SERVER_PROBES + _env_probes(), quick)
    print("\n== bad inputs per component ==")
    print(f"{'component':40s} {'tried':>7s} {'crashes':>8s} {'hangs':>6s}  notes")
    for r in results:
        print(f"{r.component:40s} {r.tried:7d} {r.crashes:8d} {r.hangs:6d}  {r.notes}")
    print(f"{'total':40s} {sum(r.tried for r in results):7d} {sum(r.crashes for r in results):8d} {sum(r.hangs for r in results):6d}")

    idle = idle_connections(200 if quick else args.idle, 300 if quick else 2000)
    print("\n== control client while idle/half-open connections are held ==")
    print(
        f"{idle['idle']} connections held: step p50 {idle['p50_ms']:.2f} ms, p99 {idle['p99_ms']:.2f} ms "
        f"(none held: p50 {idle['base_p50_ms']:.2f}, p99 {idle['base_p99_ms']:.2f}; ratio p99 "
        f"{idle['p99_ms'] / max(idle['base_p99_ms'], 1e-9):.2f}x); /health HTTP {idle['health']}"
    )

    g = growth(1000 if quick else args.cycles)
    print("\n== long run ==")
    print(
        f"{g['cycles']} reset+step cycles in {g['seconds']:.1f} s: server RSS growth {g['rss_mb']:+.1f} MiB "
        f"(of which {g['rss_second_half_mb']:+.1f} MiB in the second half; now {g['rss_end_mb']:.0f} MiB), open fds {g['fds']:+d}"
    )

    rows = recoveries(2 if quick else 5)
    print("\n== recoveries ==")
    for fault, injected, ok in rows:
        print(f"{fault:48s} {ok}/{injected} recovered")
    print(f"\nwall time {time.monotonic() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
