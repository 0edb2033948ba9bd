"""Full-size WebShop: build a store of N generated products, then measure it from worker processes.

Prints: build time (stages) and peak RSS of the build, on-disk size, search p50/p99 (one core,
uncached queries), per-worker memory (USS = private, PSS = proportional share; psutil
`memory_full_info`) of the first and each further worker while the earlier ones stay alive, and
each worker's first reset (process start -> first observation, and make + reset alone).
Targets (issue 17, at 1M products): search p50 < 5 ms, p99 < 20 ms; index build < 180 s;
< 100 MB USS per additional worker; first reset < 2 s.

Queries are what agents type: the goal instruction without its price clause (the expert's query)
and 2-6 consecutive words of an instruction (as bench_webshop.py's random agent).

    python benchmarks/bench_webshop_scale.py --products 1000000 [--out DIR] [--workers 3] [--queries 2000]
    python benchmarks/bench_webshop_scale.py --products 1000000 --out DIR --reuse [--reindex]   # measure a built store
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

ENV_ID = "arlarena/WebShop-v0"
MB = 1 / 2**20


def _queries(cat, n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = cat.goals[rng.randrange(len(cat.goals))]["instruction_text"]
        text = re.sub(r",? and price lower than [\d.]+ dollars$", "", text)
        if i % 2 == 0:
            out.append(" ".join(text.lower().replace(",", " ").split()))
        else:
            words = text.replace(",", " ").split()
            k = rng.randint(2, min(6, len(words)))
            start = rng.randrange(0, len(words) - k + 1)
            out.append(" ".join(words[start : start + k]))
    return out


def _anonymous_bytes() -> int:
    """Anonymous memory (heap, arrays) of this process: USS without the page-cache pages of the
    mapped store that only this process has touched so far (those are shared once others map them)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Anonymous:"))
    except (OSError, StopIteration):
        return 0


def worker(store: str, queries: int, steps: int, seed: int) -> None:
    """One worker process: make + reset, play, time uncached searches, report memory; then wait."""
    t_make = time.perf_counter()
    from arlarena_envs.registry import make

    env = make(ENV_ID, catalogue="store", store=store).unwrapped
    env.reset(seed=seed)
    first_reset = time.perf_counter() - t_make
    since_start = time.time() - psutil.Process().create_time()
    cpu_to_first_obs = sum(psutil.Process().cpu_times()[:2])
    rng = random.Random(seed)
    for _ in range(steps):  # a session's traffic: expert half the time, random admissible otherwise
        a = env.oracle_action() if rng.random() < 0.5 else rng.choice(env.observation.admissible_actions or ["click[back to search]"])
        if a == "search[<your query>]":
            a = f"search[{env.observation.task}]"
        if env.step_result(a or "click[back to search]").done:
            env.reset(seed=rng.randrange(10**9))
    result = {"first_reset_s": first_reset, "start_to_first_obs_s": since_start, "cpu_to_first_obs_s": cpu_to_first_obs}
    if queries:
        from arlarena_envs.webshop.disk_index import top_k

        idx = env.catalogue.index
        qs = _queries(env.catalogue, queries, seed)
        for name, search in (("", idx.top_k), ("pruned_", lambda q: idx.top_k(q, method="pruned")), ("dense_", lambda q: top_k(idx.scores(q), 50))):
            wall, cpu = [], []  # uncached: the LRU in front of `search()` is bypassed
            for q in qs:
                t, c = time.perf_counter(), time.process_time()
                search(q)
                cpu.append(time.process_time() - c)
                wall.append(time.perf_counter() - t)
            for kind, xs in (("wall", wall), ("cpu", cpu)):
                xs.sort()
                result[f"{name}search_{kind}_p50_ms"] = 1000 * xs[len(xs) // 2]
                result[f"{name}search_{kind}_p99_ms"] = 1000 * xs[int(len(xs) * 0.99)]
        result["queries"] = len(qs)
    mem = psutil.Process().memory_full_info()
    result.update(uss_mb=mem.uss * MB, pss_mb=mem.pss * MB, rss_mb=mem.rss * MB, anon_mb=_anonymous_bytes() * MB)
    print(json.dumps(result), flush=True)
    sys.stdin.readline()  # stay alive (holding the mapped pages) until the parent is done


def reindex(store: Path) -> None:
    """Rebuild the store's BM25 index from its products (into a temporary folder) and time the
    index build alone: tokenizing every document and the arrays, in wall and CPU seconds."""
    import tempfile

    from arlarena_envs.webshop.disk_index import TokenIds, Tokenizer, build_index
    from arlarena_envs.webshop.search import index_text
    from arlarena_envs.webshop.store import StoreCatalogue

    cat = StoreCatalogue(store)
    tokenizer, tokens = Tokenizer(), TokenIds()
    wall = cpu = 0.0
    for i in range(len(cat.products)):
        p = json.loads(cat.products.raw(i))  # decoding is not part of the index build
        t, c = time.perf_counter(), time.process_time()
        tokens.add(tokenizer(index_text(p)))
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
    with tempfile.TemporaryDirectory() as tmp:
        t, c = time.perf_counter(), time.process_time()
        stats = build_index(tokens, tmp)
        aw, ac = time.perf_counter() - t, time.process_time() - c
    print(f"index rebuild from the store's products: tokenize {wall:.1f} s wall / {cpu:.1f} s CPU, arrays {aw:.1f} s wall / {ac:.1f} s CPU; "
          f"total {wall + aw:.1f} s wall, {cpu + ac:.1f} s CPU (target < 180 s: {(cpu + ac) / 180:.2f} of budget in CPU time); {stats}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--out", default=None, help="store directory (default: a temporary one, removed after)")
    ap.add_argument("--reuse", action="store_true", help="measure an existing store at --out instead of building")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=300, help="env steps each worker plays before measuring memory")
    ap.add_argument("--reindex", action="store_true", help="with --reuse: also time an index rebuild from the store's products")
    ap.add_argument("--worker", metavar="STORE", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.queries, args.steps, args.seed)
        return
    out = Path(args.out) if args.out else Path(os.environ.get("TMPDIR", "/tmp")) / f"webshop-store-{args.products}-{os.getpid()}"
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    print(f"WebShop store, {args.products:,} generated products -> {out}")
    if not args.reuse:
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "arlarena_envs.cli", "webshop", "build-catalogue", "--products", str(args.products), "--out", str(out), "--force"]
        subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(f"build: {wall:.1f} s wall, {ru.ru_utime + ru.ru_stime:.1f} s CPU (one process, incl. interpreter start), peak RSS {ru.ru_maxrss / 1024:,.0f} MB")
    manifest = json.loads((out / "manifest.json").read_text())
    st = manifest["stage_seconds"]
    index_s = st["of which tokenize"] + st["index"]
    print(f"  stages: {', '.join(f'{k} {v:.1f} s' for k, v in st.items())}; goals {manifest['goals']:,}; index {manifest['index']}")
    cpu = manifest.get("stage_cpu_seconds") or {}
    index_cpu = f", {cpu['of which tokenize'] + cpu['index']:.1f} s CPU" if cpu else ""
    print(f"  index build (tokenize + arrays): {index_s:.1f} s wall{index_cpu} (target < 180 s: {index_s / 180:.2f} of budget in wall time)")
    size = sum(f["bytes"] for f in manifest["files"].values())
    idx_size = sum(f["bytes"] for k, f in manifest["files"].items() if k.startswith("index"))
    print(f"on disk: {size * MB:,.0f} MB ({idx_size * MB:,.0f} MB index, {manifest['files']['products.jsonl']['bytes'] * MB:,.0f} MB products)")
    if args.reindex:
        reindex(out)
    procs = []
    try:
        for w in range(args.workers):
            p = subprocess.Popen([sys.executable, __file__, "--worker", str(out), "--queries", str(args.queries if w == 0 else 200),
                                  "--steps", str(args.steps), "--seed", str(w)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            procs.append(p)
            r = json.loads(p.stdout.readline())  # type: ignore[union-attr]
            if w == 0:
                for name, label in (("", "auto, as search() runs"), ("pruned_", "pruned (MaxScore) only"), ("dense_", "dense (every posting) only")):
                    print(f"search {label}, {r['queries']} uncached queries, one thread: CPU p50 {r[name + 'search_cpu_p50_ms']:.2f} ms "
                          f"(target < 5: {r[name + 'search_cpu_p50_ms'] / 5:.2f}x), p99 {r[name + 'search_cpu_p99_ms']:.2f} ms "
                          f"(target < 20: {r[name + 'search_cpu_p99_ms'] / 20:.2f}x); wall p50 {r[name + 'search_wall_p50_ms']:.2f} ms, p99 {r[name + 'search_wall_p99_ms']:.2f} ms")
            which = "first" if w == 0 else f"+{w}"
            print(f"worker {which}: USS {r['uss_mb']:.0f} MB (anonymous {r['anon_mb']:.0f} MB), PSS {r['pss_mb']:.0f} MB, RSS {r['rss_mb']:.0f} MB; "
                  f"first reset {r['first_reset_s']:.2f} s (make + reset), {r['start_to_first_obs_s']:.2f} s wall / "
                  f"{r['cpu_to_first_obs_s']:.2f} s CPU from process start (target < 2 s: {r['cpu_to_first_obs_s'] / 2:.2f}x of CPU)" + ("" if w == 0 else f"; USS target < 100 MB: {r['uss_mb'] / 100:.2f}x"))
    finally:
        for p in procs:
            try:
                p.stdin.close()  # type: ignore[union-attr]
                p.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                p.kill()
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
