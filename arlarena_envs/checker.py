"""`arlarena check <env-id>`: conformance checks for a text env, as small `check_*` functions.

Each check raises `CheckFailedError` on a hard violation; `check_env` runs them all and returns
a `CheckReport` (one row per check, with timing and a detail line).

What is checked:
  gymnasium      Gymnasium's own `check_env` on the unwrapped env
  info_keys      every reset/step `info` has exactly the contract's keys
  schema         every StepResult survives a JSON round trip unchanged
  bad_input      non-string actions, step before reset, huge/binary text: typed errors or statuses
  truncation     an episode never exceeds `max_steps` and is truncated there
  determinism    same (seed, actions) -> identical transcript, twice in one process
  group_reset    G envs reset with one seed -> identical state hashes (GRPO groups)
  threads        8 threads replaying the same transcripts agree with the sequential run
  processes      two fresh interpreters (different PYTHONHASHSEED) agree with this process
  resources      N resets (spec.check.resets, default 1,000) without RSS or fd growth
  golden         the transcripts of the spec's golden (seed, actions) hash to the stored values
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from typing import Any, Callable

import numpy as np
import psutil
from pydantic import BaseModel

from arlarena_envs.contract import INFO_KEYS, GoldenFingerprint, StepResult
from arlarena_envs.core import TextEnv
from arlarena_envs.episodes import Reply, TurnView, run_episodes
from arlarena_envs.errors import CheckFailedError, InvalidActionError, ResetNeededError
from arlarena_envs.hashing import transcript_hash
from arlarena_envs.pools import InProcessPool
from arlarena_envs.registry import get_spec, make, write_golden


class CheckResult(BaseModel):
    name: str
    passed: bool
    detail: str = ""
    seconds: float = 0.0


class CheckReport(BaseModel):
    env_id: str
    results: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def table(self) -> str:
        lines = [f"arlarena check {self.env_id}"]
        for r in self.results:
            mark = "PASS" if r.passed else "FAIL"
            lines.append(f"  {mark}  {r.name:<12} {r.seconds:6.2f}s  {r.detail}")
        lines.append("OK" if self.passed else "FAILED")
        return "\n".join(lines)


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailedError(message)


def _new_env(env_id: str, env_kwargs: dict[str, Any]) -> TextEnv:
    env = make(env_id, **env_kwargs).unwrapped
    if not isinstance(env, TextEnv):
        raise CheckFailedError(f"{env_id} does not build a TextEnv (got {type(env).__name__})")
    return env


# ------------------------------------------------------------------ transcripts


def scripted_actions(env: TextEnv, seed: int, split: str, n_steps: int) -> list[str]:
    """A reproducible action list: a seeded random walk over admissible actions, mixing bare
    and tagged forms and one inadmissible action, so parsing and penalties are exercised
    (played by the episode runner)."""
    rng = np.random.default_rng(seed)

    def act(view: TurnView) -> list[Reply | None]:
        k, obs = view.turn, view.observations[0]
        if k >= n_steps:
            return [None]
        if k == 2:
            return [Reply("<think>probe</think><action>__not_an_action__</action>")]
        adm = obs.admissible_actions or []
        a = adm[int(rng.integers(len(adm)))] if adm else "look"
        return [Reply(f"<think>step {k}</think><action>{a}</action>" if k % 2 else a)]

    (episode,) = run_episodes(InProcessPool.of_envs([env]), act, [seed], options=[{"split": split}], keep_prompts=False)
    return [t.response for t in episode.turns]


def run_transcript(env: TextEnv, seed: int, split: str, actions: list[str]) -> list[Any]:
    """Events of one episode: the reset, then one event per step (stops at episode end)."""
    obs, info = env.reset_result(seed=seed, options={"split": split})
    events: list[Any] = [{"reset": seed, "split": split, "obs": obs, "info": info}]
    for a in actions:
        r = env.step_result(a)
        events.append({"action": a, "result": r})
        if r.done:
            break
    return events


def transcript_digest(env: TextEnv, seed: int, split: str, actions: list[str]) -> str:
    return transcript_hash(run_transcript(env, seed, split, actions))


def _plans(env: TextEnv, n_steps: int, seeds: tuple[int, ...] = (0, 1, 2)) -> list[tuple[int, str, list[str]]]:
    spec = env.env_spec
    splits = [spec.default_split] + [s for s in spec.splits if s != spec.default_split][:1]
    plans = [(s, splits[0], scripted_actions(env, s, splits[0], n_steps)) for s in seeds]
    if len(splits) > 1:
        plans.append((0, splits[1], scripted_actions(env, 0, splits[1], n_steps)))
    return plans


# ------------------------------------------------------------------ checks


def check_gymnasium(env_id: str, env_kwargs: dict[str, Any], **_: Any) -> str:
    from gymnasium.utils.env_checker import check_env as gym_check_env

    env = _new_env(env_id, env_kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env, skip_render_check=True)
    env.close()
    return f"{len(caught)} warning(s)" if caught else "no warnings"


def check_info_keys_and_schema(env_id: str, env_kwargs: dict[str, Any], n_steps: int, **_: Any) -> str:
    env = _new_env(env_id, env_kwargs)
    count = 0
    for seed, split, actions in _plans(env, n_steps):
        _, info = env.reset(seed=seed, options={"split": split})
        _require(tuple(info) == INFO_KEYS, f"reset info keys {sorted(info)} != {sorted(INFO_KEYS)}")
        env.reset_result(seed=seed, options={"split": split})
        for a in actions:
            r = env.step_result(a)
            info = r.info.to_info()
            _require(tuple(info) == INFO_KEYS, f"step info keys {sorted(info)} != {sorted(INFO_KEYS)}")
            json.dumps(info)  # info must be plain JSON
            again = StepResult.model_validate_json(r.model_dump_json())
            _require(again == r, f"StepResult changed in a JSON round trip at step {r.info.step}")
            count += 1
            if r.done:
                break
    env.close()
    return f"{count} steps round-tripped"


def check_bad_input(env_id: str, env_kwargs: dict[str, Any], **_: Any) -> str:
    env = _new_env(env_id, env_kwargs)
    try:
        env.step_result("up")
        raise CheckFailedError("step before reset did not raise ResetNeededError")
    except ResetNeededError:
        pass
    env.reset_result(seed=0)
    for bad in (None, 123, 4.5, ["up"], {"a": 1}):
        try:
            env.step_result(bad)  # type: ignore[arg-type]
            raise CheckFailedError(f"step({bad!r}) did not raise InvalidActionError")
        except InvalidActionError:
            pass
    statuses = []
    for text in ("", "x" * 1_000_000, "\x00\xff\ufffd\U0001f600", "<action><action>x</action></action>", b"\xff\xfe<action>x"):
        env.reset_result(seed=0)
        r = env.step_result(text)
        statuses.append(r.info.parse_status.value)
        _require(not r.info.valid_action, f"garbage input {text[:20]!r} was accepted as a valid action")
    env.close()
    return "statuses " + ",".join(statuses)


def check_truncation(env_id: str, env_kwargs: dict[str, Any], **_: Any) -> str:
    env = _new_env(env_id, {**env_kwargs, "invalid_action_policy": "noop"})
    max_steps = env.protocol.max_steps
    env.reset_result(seed=0)
    steps = 0
    while True:
        r = env.step_result("<action>__not_an_action__</action>")  # invalid: nothing changes
        steps += 1
        _require(steps <= max_steps, f"episode ran past max_steps={max_steps}")
        if r.done:
            break
    _require(r.truncated and not r.terminated and steps == max_steps, f"expected truncation at {max_steps}, got step {steps}")
    try:
        env.step_result("x")
        raise CheckFailedError("step after the episode ended did not raise ResetNeededError")
    except ResetNeededError:
        pass
    env.close()
    return f"truncated at {max_steps}"


def check_determinism(env_id: str, env_kwargs: dict[str, Any], n_steps: int, **_: Any) -> str:
    env_a, env_b = _new_env(env_id, env_kwargs), _new_env(env_id, env_kwargs)
    plans = _plans(env_a, n_steps)
    for seed, split, actions in plans:
        ha = transcript_digest(env_a, seed, split, actions)
        hb = transcript_digest(env_b, seed, split, actions)
        hc = transcript_digest(env_a, seed, split, actions)
        _require(ha == hb == hc, f"seed {seed} split {split}: transcripts differ ({ha[:12]} {hb[:12]} {hc[:12]})")
    env_a.close()
    env_b.close()
    return f"{len(plans)} transcripts identical"


def check_group_reset(env_id: str, env_kwargs: dict[str, Any], **_: Any) -> str:
    envs = [_new_env(env_id, env_kwargs) for _ in range(4)]
    hashes = set()
    for seed in (0, 7):
        firsts = [e.reset_result(seed=seed)[0] for e in envs]
        _require(len({o.state_hash for o in firsts}) == 1, f"seed {seed}: group members got different states")
        _require(len({o.text for o in firsts}) == 1, f"seed {seed}: group members got different observations")
        hashes.add(firsts[0].state_hash)
    for e in envs:
        e.close()
    return "group of 4 identical for seeds 0 and 7" + ("" if len(hashes) == 2 else " (note: seeds 0 and 7 share a start state)")


def check_threads(env_id: str, env_kwargs: dict[str, Any], n_steps: int, **_: Any) -> str:
    probe = _new_env(env_id, env_kwargs)
    plans = _plans(probe, n_steps)
    expected = [transcript_digest(probe, s, sp, a) for s, sp, a in plans]
    probe.close()
    results: list[list[str] | Exception] = [[] for _ in range(8)]

    def worker(i: int) -> None:
        try:
            env = _new_env(env_id, env_kwargs)
            results[i] = [transcript_digest(env, s, sp, a) for s, sp, a in plans]
            env.close()
        except Exception as e:  # reported below, with the thread index
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in enumerate(results):
        if isinstance(r, Exception):
            raise CheckFailedError(f"thread {i} raised {type(r).__name__}: {r}")
        _require(r == expected, f"thread {i} produced different transcripts")
    return "8 threads agree"


def check_processes(env_id: str, env_kwargs: dict[str, Any], n_steps: int, **_: Any) -> str:
    env = _new_env(env_id, env_kwargs)
    plans = _plans(env, n_steps)
    expected = [transcript_digest(env, s, sp, a) for s, sp, a in plans]
    env.close()
    payload = json.dumps({"env_id": env_id, "env_kwargs": env_kwargs, "plans": plans})
    for hashseed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-m", "arlarena_envs.checker", "--transcripts-from-stdin"],
            input=payload,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONHASHSEED": hashseed},
        )
        _require(proc.returncode == 0, f"subprocess failed: {proc.stderr[-2000:]}")
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        _require(got == expected, f"fresh process (PYTHONHASHSEED={hashseed}) produced different transcripts")
    return "2 fresh processes agree"


def check_resources(env_id: str, env_kwargs: dict[str, Any], resets: int, max_rss_growth_mb: float, **_: Any) -> str:
    env = _new_env(env_id, env_kwargs)
    proc = psutil.Process()
    warm = max(10, resets // 10)
    n_tasks = env.n_tasks()
    for i in range(warm):
        env.reset_result(seed=i % n_tasks)
    gc.collect()
    rss0, fds0 = proc.memory_info().rss, proc.num_fds()
    for i in range(resets):
        env.reset_result(seed=(warm + i) % n_tasks)
        env.step_result("<action>__probe__</action>")
    gc.collect()
    rss1, fds1 = proc.memory_info().rss, proc.num_fds()
    env.close()
    growth = (rss1 - rss0) / 2**20
    _require(fds1 <= fds0, f"file descriptors grew from {fds0} to {fds1} over {resets} resets")
    _require(growth <= max_rss_growth_mb, f"RSS grew by {growth:.1f} MB over {resets} resets (limit {max_rss_growth_mb} MB)")
    return f"{resets} resets: RSS {growth:+.1f} MB, fds {fds0}->{fds1}"


def make_golden(env_id: str, env_kwargs: dict[str, Any] | None = None) -> list[GoldenFingerprint]:
    env = _new_env(env_id, env_kwargs or {})
    n_steps = env.env_spec.check.steps_per_transcript
    out = [
        GoldenFingerprint(split=sp, seed=s, actions=a, sha256=transcript_digest(env, s, sp, a))
        for s, sp, a in _plans(env, n_steps)
    ]
    env.close()
    return out


def check_golden(env_id: str, env_kwargs: dict[str, Any], **_: Any) -> str:
    spec = get_spec(env_id)
    _require(bool(spec.golden), f"{spec.id} has no golden fingerprints; run `arlarena check {spec.id} --write-golden`")
    env = _new_env(env_id, env_kwargs)
    for g in spec.golden:
        got = transcript_digest(env, g.seed, g.split, g.actions)
        _require(
            got == g.sha256,
            f"golden transcript seed={g.seed} split={g.split} changed ({got[:12]} != {g.sha256[:12]}): "
            f"the env's behaviour changed, so bump its version (-v{spec.version + 1})",
        )
    env.close()
    return f"{len(spec.golden)} fingerprints match"


CHECKS: dict[str, Callable[..., str]] = {
    "gymnasium": check_gymnasium,
    "info_schema": check_info_keys_and_schema,
    "bad_input": check_bad_input,
    "truncation": check_truncation,
    "determinism": check_determinism,
    "group_reset": check_group_reset,
    "threads": check_threads,
    "processes": check_processes,
    "resources": check_resources,
    "golden": check_golden,
}


def check_env(
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    only: list[str] | None = None,
    skip: list[str] | None = None,
    resets: int | None = None,
) -> CheckReport:
    """Run the conformance checks; never raises for a failing check (see the report)."""
    spec = get_spec(env_id)
    kw = dict(
        env_kwargs=dict(env_kwargs or {}),
        n_steps=spec.check.steps_per_transcript,
        resets=resets if resets is not None else spec.check.resets,
        max_rss_growth_mb=spec.check.max_rss_growth_mb,
    )
    results = []
    for name, fn in CHECKS.items():
        if (only and name not in only) or (skip and name in skip):
            continue
        t0 = time.perf_counter()
        try:
            detail, ok = fn(spec.id, **kw), True
        except CheckFailedError as e:
            detail, ok = str(e), False
        except Exception as e:  # an env that crashes fails the check; the report says how
            detail, ok = f"{type(e).__name__}: {e}", False
        results.append(CheckResult(name=name, passed=ok, detail=detail, seconds=time.perf_counter() - t0))
    return CheckReport(env_id=spec.id, results=results)


# ------------------------------------------------------------------ CLI


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("env_id", help="e.g. arlarena/Sokoban-v0")
    p.add_argument("--only", nargs="*", choices=list(CHECKS), help="run only these checks")
    p.add_argument("--skip", nargs="*", choices=list(CHECKS), help="skip these checks")
    p.add_argument("--resets", type=int, help="resets in the resource check (default: the spec's, 1,000)")
    p.add_argument("--env-kwargs", default="{}", help="JSON object of extra make() kwargs")
    p.add_argument("--write-golden", action="store_true", help="record golden fingerprints into the spec file, then check")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def main_check(args: argparse.Namespace) -> int:
    from arlarena_envs.cli_basic import parse_env_kwargs

    env_kwargs = parse_env_kwargs(args.env_kwargs)
    if args.write_golden:
        path = write_golden(args.env_id, make_golden(args.env_id, env_kwargs))
        print(f"wrote golden fingerprints to {path}")
    report = check_env(args.env_id, env_kwargs=env_kwargs, only=args.only, skip=args.skip, resets=args.resets)
    print(report.model_dump_json(indent=2) if args.json else report.table())
    return 0 if report.passed else 1


def _transcripts_from_stdin() -> None:
    job = json.loads(sys.stdin.read())
    env = _new_env(job["env_id"], job["env_kwargs"])
    print(json.dumps([transcript_digest(env, s, sp, a) for s, sp, a in job["plans"]]))


if __name__ == "__main__":
    if sys.argv[1:] == ["--transcripts-from-stdin"]:
        import arlarena_envs  # noqa: F401  (registers ids)

        _transcripts_from_stdin()
    else:
        from arlarena_envs.cli import main

        sys.exit(main(["check", *sys.argv[1:]]))
