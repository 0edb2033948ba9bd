"""Reliability probes for the envs, the CLI, the leaderboard and the stability reader: bad inputs
tried, crashes and hangs per component.

    python benchmarks/reliability_probes_envs.py            # every probe, prints a table
    python benchmarks/reliability_probes_envs.py --quick    # fewer inputs per probe

`probes()` returns one callable per component (benchmarks/bench_reliability.py imports it); each
returns {"component", "tried", "crashes", "hangs"} (plus "skipped" with a reason when the
component cannot run here, e.g. a missing extra). Definitions:

* crash: an exception that is not an `ArlArenaError` subclass, a step that raised and left the
  env changed (half-applied state), a bad input accepted where it must be refused (a CLI exit
  status 0, a self-contradicting leaderboard row rendered, a spec mutation that leaks), or a
  valid input refused;
* hang: one input took longer than the component's time bound (measured, not interrupted).

Inputs are generated from a fixed seed (numpy), so two runs try the same inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from arlarena_envs.errors import ArlArenaError  # noqa: E402

Probe = Callable[[], dict[str, Any]]
_TOKENS = ["<think>", "</think>", "<action>", "</action>", "search[", "click[", "]", "[", "up", "look", "help",
           "buy now", "\ud800", "\udfff", "\x00", "\u3042", "\U0001F600", " ", "\n", "go to desk 1"]


class Tally:
    def __init__(self, component: str, bound_s: float):
        self.component, self.bound_s = component, bound_s
        self.tried = self.crashes = self.hangs = 0
        self.examples: list[str] = []

    @contextlib.contextmanager
    def attempt(self, what: str) -> Iterator[None]:
        """One bad input: a non-ArlArenaError exception is a crash, over bound_s a hang."""
        self.tried += 1
        t0 = time.perf_counter()
        try:
            yield
        except ArlArenaError:
            pass
        except Exception as e:  # noqa: BLE001 - counting them is the point
            self.crash(f"{what}: {type(e).__name__}: {str(e)[:120]}")
        if time.perf_counter() - t0 > self.bound_s:
            self.hangs += 1
            self.examples.append(f"hang {what}: {time.perf_counter() - t0:.1f} s")

    def crash(self, why: str) -> None:
        self.crashes += 1
        if len(self.examples) < 5:
            self.examples.append(why)

    def result(self, **extra: Any) -> dict[str, Any]:
        return {"component": self.component, "tried": self.tried, "crashes": self.crashes, "hangs": self.hangs,
                "examples": self.examples, **extra}


def bad_texts(rng: np.random.Generator, n: int) -> list[str]:
    """Random unicode (lone surrogates included), token soups, huge and repetitive strings."""
    out = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            out.append("".join(chr(int(c)) for c in rng.integers(0, 0x110000, int(rng.integers(0, 60)))))
        elif kind == 1:
            out.append("".join(rng.choice(_TOKENS, int(rng.integers(1, 30)))))
        elif kind == 2:
            out.append(str(rng.choice(_TOKENS)) * int(rng.integers(1, 20_000)))
        elif kind == 3:
            out.append("search[" + "w " * int(rng.integers(1, 600_000)) + "]")
        else:
            out.append("<think>" + "".join(rng.choice(_TOKENS, 10)) + "</think><action>" + str(rng.choice(_TOKENS)) + "</action>")
    return out


# ------------------------------------------------------------------ parser


def probe_parser(n: int = 400) -> dict[str, Any]:
    from arlarena_envs.contract import ParseMode
    from arlarena_envs.parsing import parse_response

    t = Tally("parser", bound_s=2.0)
    rng = np.random.default_rng(0)
    for text in bad_texts(rng, n):
        for mode in ParseMode:
            with t.attempt(f"parse {text[:30]!r}"):
                parse_response(text, mode, max_chars=100_000)
    return t.result()


# ------------------------------------------------------------------ envs


def _snap(env: Any) -> tuple:
    return (env.observation, env.history, env._steps, env._ready, env._state_hash())


def probe_env(env_id: str, n: int, bound_s: float, env_kwargs: dict | None = None) -> dict[str, Any]:
    from arlarena_envs.contract import ParsedAction, ParseStatus
    from arlarena_envs.registry import make

    t = Tally(f"env {env_id.split('/')[-1]}", bound_s=bound_s)
    try:
        env = make(env_id, **(env_kwargs or {})).unwrapped
        env.reset(seed=0)
    except ArlArenaError as e:
        return t.result(skipped=f"{type(e).__name__}: {str(e)[:100]}")
    rng = np.random.default_rng(1)
    actions: list[Any] = bad_texts(rng, n)
    actions += [s.encode("utf-8", "surrogatepass") for s in actions[: n // 4]]
    actions += [ParsedAction(action=a, status=ParseStatus(s), format_valid=True)
                for a, s in zip(actions[: n // 4], rng.choice([s.value for s in ParseStatus], n // 4))]
    actions += [None, 3, 1.5, ["up"], {"action": "up"}, object()]
    for i, a in enumerate(actions):
        if not env._ready:
            env.reset(seed=i)
        before = _snap(env)
        ok = False
        with t.attempt(f"step {str(a)[:30]!r}"):
            env.step(a)
            ok = True
        if not ok and _snap(env) != before:
            t.crash(f"half-applied state after a refused step {str(a)[:30]!r}")
    bad_resets = [{"seed": -1}, {"seed": "1"}, {"seed": True}, {"seed": 1.5}, {"seed": float("nan")},
                  {"options": {"nope": 1}}, {"options": {"task_index": -1}}, {"options": {"task_index": 10**12}},
                  {"options": {"split": "nope"}}, {"options": {"task_index": "0"}}, {"options": {"split": "\ud800"}}]
    for kw in bad_resets:
        t.tried += 1
        try:
            env.reset(**kw)
            t.crash(f"reset accepted {kw}")
        except ArlArenaError:
            pass
        except Exception as e:  # noqa: BLE001
            t.crash(f"reset {kw}: {type(e).__name__}: {e}")
    bad_make = [{"max_step": 5}, {"max_steps": 0}, {"max_steps": "x"}, {"split": "nope"}, {"render_mode": "rgb"},
                {"invalid_action_policy": "explode"}, {"reward_scale": "big"}]
    for kw in bad_make:
        t.tried += 1
        try:
            make(env_id, **{**(env_kwargs or {}), **kw}).close()
            t.crash(f"make accepted {kw}")
        except ArlArenaError:
            pass
        except Exception as e:  # noqa: BLE001
            t.crash(f"make {kw}: {type(e).__name__}: {e}")
    env.close()
    return t.result()


def probe_specs() -> dict[str, Any]:
    from arlarena_envs.registry import get_spec, load_specs

    t = Tally("specs", bound_s=1.0)
    for env_id in sorted(load_specs()):
        before = get_spec(env_id).model_dump_json()
        for mutate in (
            lambda s: setattr(s.protocol, "max_steps", 3),
            lambda s: setattr(s, "default_split", "x"),
            lambda s: s.kwargs.update(x=1),
            lambda s: s.splits.clear(),
            lambda s: s.golden.clear(),
            lambda s: setattr(s.leaderboard, "episodes", 1) if s.leaderboard else None,
        ):
            with t.attempt(f"mutate {env_id}"):
                try:
                    mutate(get_spec(env_id))
                except Exception as e:  # pydantic's frozen-model error: the refusal we want
                    if type(e).__name__ != "ValidationError":
                        raise
            if get_spec(env_id).model_dump_json() != before:
                t.crash(f"a mutation of {env_id}'s spec leaked into the registry")
    return t.result()


# ------------------------------------------------------------------ CLI


def probe_cli() -> dict[str, Any]:
    from arlarena_envs.cli import main

    t = Tally("cli", bound_s=60.0)
    soko = "arlarena/Sokoban-v0"
    cases = [
        ["play", soko, "--seed", "-1"], ["play", soko, "--seed", "x"], ["play", soko, "--env-kwargs", '{"max_step":5}'],
        ["play", soko, "--env-kwargs", "[1"], ["play", soko, "--env-kwargs", "3"], ["play", soko, "--env-kwargs", '{"max_steps":0}'],
        ["play", soko, "--split", "nope"], ["play", "Nope-v0"], ["play", "\ud800"], ["play", soko, "--env-kwargs", '{"dim_room":"x"}'],
        ["check", soko, "--env-kwargs", "{"], ["check", "Nope-v0"], ["check", soko, "--only", "nope"],
        ["stability", "/nonexistent/run"], ["stability", "--config", "/nonexistent.yaml", "/x"],
        ["stability", "--set", "window", "/x"], ["stability", "--set", "window=-3", "--example", tempfile.mkdtemp()],
        ["leaderboard", "render", "--results", "/nonexistent"], ["leaderboard", "evaluate", "--env", "Nope-v0", "--policy", "random"],
        ["leaderboard", "evaluate", "--env", soko, "--policy", "gpt"], ["leaderboard", "evaluate", "--env", soko, "--policy", "random", "--episodes", "0"],
        ["leaderboard", "evaluate", "--env", soko, "--policy", "random", "--backend", "remote"],
        ["leaderboard", "frobnicate"], ["schema", "/proc/forbidden"], ["frobnicate"], ["list", "--nope"],
    ]
    for argv in cases:
        t.tried += 1
        err = io.StringIO()
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                old_stdin, sys.stdin = sys.stdin, io.StringIO("")
                try:
                    rc = main(argv)
                finally:
                    sys.stdin = old_stdin
        except SystemExit as e:  # argparse usage errors
            rc = e.code
        except Exception as e:  # noqa: BLE001 - an escaping exception prints a traceback
            t.crash(f"{argv}: {type(e).__name__}: {str(e)[:100]}")
            continue
        if rc in (0, None):
            t.crash(f"{argv}: exit status 0 on a bad input")
        elif "Traceback" in err.getvalue():
            t.crash(f"{argv}: traceback printed")
        if time.perf_counter() - t0 > t.bound_s:
            t.hangs += 1
    return t.result()


# ------------------------------------------------------------------ leaderboard


def probe_leaderboard(n: int = 60) -> dict[str, Any]:
    from arlarena_envs.leaderboard import evaluate, render

    t = Tally("leaderboard", bound_s=10.0)
    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory() as tmp:
        row = evaluate("arlarena/Sokoban-v0", "oracle", out_dir=Path(tmp) / "runs")
        good = json.loads(row.model_dump_json())

        def edits() -> Iterator[tuple[str, Any, bool]]:
            """(label, row JSON or raw text, must_refuse)."""
            yield "valid row", good, False
            for key in ("success", "score", "reward", "steps"):
                d = json.loads(json.dumps(good))
                d[key]["mean"] = float(d[key]["mean"]) * 0.5 + 0.01
                yield f"edited {key}", d, True
            d = json.loads(json.dumps(good))
            if d.get("records"):
                d["records"][0]["won"] = not d["records"][0]["won"]
                yield "edited record", d, True
            d = json.loads(json.dumps(good))
            d["episodes"] -= 1
            yield "episode count", d, True
            d = json.loads(json.dumps(good))
            d["records"], d["records_digest"] = [], ""
            yield "no records", d, True
            d = json.loads(json.dumps(good))
            d["provenance"]["protocol"]["max_steps"] = 3
            yield "stale protocol", d, True
            for i in range(n):
                text = json.dumps(good)
                cut = int(rng.integers(0, len(text)))
                choice = i % 4
                if choice == 0:
                    yield "truncated file", text[:cut], True
                elif choice == 1:
                    yield "garbage", "".join(chr(int(c)) for c in rng.integers(0, 0xD7FF, 200)), True
                elif choice == 2:
                    yield "deep nesting", '{"env_id": ' + "[" * 5000 + "]" * 5000 + "}", True
                else:
                    d = json.loads(text)
                    d["policy"] = "".join(chr(int(c)) for c in rng.integers(0xD800, 0xE000, 5))  # lone surrogates
                    yield "surrogate policy name", d, False

        for label, content, must_refuse in edits():
            folder = Path(tempfile.mkdtemp(dir=tmp)) / "Sokoban-v0"
            folder.mkdir(parents=True)
            body = content if isinstance(content, str) else json.dumps(content)
            (folder / "row.json").write_bytes(body.encode("utf-8", "surrogatepass"))
            shown = None
            with t.attempt(label):
                shown, _ = render(folder.parent, folder.parent / "lb.md", folder.parent / "lb.html")
            if must_refuse and shown:
                t.crash(f"{label}: a bad row was rendered")
            if not must_refuse and shown is None:
                t.crash(f"{label}: a valid row was refused")
    return t.result()


# ------------------------------------------------------------------ stability


def probe_stability(n: int = 120) -> dict[str, Any]:
    from arlarena_envs.stability import analyze_runs, load_run, write_report

    t = Tally("stability logs", bound_s=10.0)
    rng = np.random.default_rng(3)
    keys = ["step", "training/global_step", "_step", "success", "val/success_rate", "actor/grad_norm", "phase",
            "entropy", "eval_success", "x", "\ud800"]
    values: list[Any] = [None, True, 1, -1, 1e308, float("nan"), float("inf"), "1", "\udfff", [], {}, [[[]]], 10**30]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            lines = []
            for _ in range(int(rng.integers(0, 15))):
                kind = int(rng.integers(0, 4))
                if kind == 0:
                    row = {str(rng.choice(keys)): values[int(rng.integers(0, len(values)))] for _ in range(int(rng.integers(0, 6)))}
                    lines.append(json.dumps(row, ensure_ascii=True, allow_nan=True))
                elif kind == 1:
                    lines.append("".join(chr(int(c)) for c in rng.integers(1, 0x110000, int(rng.integers(0, 40)))))
                elif kind == 2:
                    depth = int(rng.integers(1, 5000))
                    lines.append('{"step": 1, "x": ' + "[" * depth + "]" * depth + "}")
                else:
                    lines.append(json.dumps({"step": int(rng.integers(-5, 50)), "success": float(rng.random()),
                                             "actor/grad_norm": float(rng.random())}))
            name = ("metrics.jsonl", "metrics.csv", "train.log")[i % 3]
            folder = Path(tmp) / f"run{i}"
            folder.mkdir()
            body = "\n".join(lines)
            if name.endswith(".csv"):
                body = "step,success,actor/grad_norm\n" + "\n".join(ln.replace("\n", " ")[:80] for ln in lines)
            elif name.endswith(".log"):
                body = "\n".join(f"step:{j} - " + ln.replace("\n", " ") for j, ln in enumerate(lines))
            (folder / name).write_bytes(body.encode("utf-8", "surrogatepass"))
            with t.attempt(f"{name} #{i}"):
                load_run(folder)
                write_report(analyze_runs([folder]), folder / "report", plots=False)
    return t.result()


# ------------------------------------------------------------------ the list


def probes(quick: bool = False) -> list[Probe]:
    """One callable per component; each returns {"component", "tried", "crashes", "hangs"}."""
    k = 4 if quick else 1
    return [
        lambda: probe_parser(400 // k),
        lambda: probe_env("arlarena/Sokoban-v0", 300 // k, bound_s=2.0),
        lambda: probe_env("arlarena/WebShop-v0", 300 // k, bound_s=2.0),
        lambda: probe_env("arlarena/TextWorld-v0", 40 // k, bound_s=20.0),
        lambda: probe_env("arlarena/ALFWorld-v0", 40 // k, bound_s=20.0),
        probe_specs,
        probe_cli,
        lambda: probe_leaderboard(60 // k),
        lambda: probe_stability(120 // k),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of the inputs per probe")
    ap.add_argument("--json", action="store_true", help="print the results as JSON lines")
    args = ap.parse_args(argv)
    print(f"{'component':<22} {'tried':>6} {'crashes':>8} {'hangs':>6} {'seconds':>8}  note")
    total_crashes = 0
    for probe in probes(args.quick):
        t0 = time.perf_counter()
        r = probe()
        dt = time.perf_counter() - t0
        total_crashes += r["crashes"] + r["hangs"]
        note = r.get("skipped") or "; ".join(r.get("examples", [])[:3])
        print(f"{r['component']:<22} {r['tried']:>6} {r['crashes']:>8} {r['hangs']:>6} {dt:>8.1f}  {note}", flush=True)
        if args.json:
            print(json.dumps({k: v for k, v in r.items() if k != "examples"}))
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
