"""Asynchronous pools: the lockstep layer keeps the wrapped pool's transcripts, the async runner
gives the same episodes as the lockstep runner, an env never waits for another env's reply, and
a dead worker truncates only its own envs."""

from __future__ import annotations

import concurrent.futures as cf
import threading

import pytest

from arlarena_envs.episodes import Reply, TurnRequest, run_episodes, run_episodes_async
from arlarena_envs.errors import ConfigError, ResetNeededError
from arlarena_envs.pools import make_pool
from arlarena_envs.pools.async_pool import AsyncEnvPool

SOKOBAN = "arlarena/Sokoban-v0"
SEEDS = [11, 11, 11, 42, 42, 42]
SCRIPT = [
    ["up", "left", None, "down", "<think>t</think><action>right</action>", "up"],
    ["left", "oops", "up", None, "down", "right"],
    ["down", "down", "right", "left", None, "up"],
]
MOVES = ["up", "left", "down", "right", "nope"]


def _run(pool):
    out = [pool.reset(SEEDS), pool.prompts(), pool.oracle_actions()]
    for actions in SCRIPT:
        out.append(pool.step(actions))
        out.append(pool.prompts())
    for _ in range(3):
        acts = pool.oracle_actions()
        out.append(acts)
        out.append(pool.step(acts))
    return out


def _reply(index: int, turn: int) -> Reply | None:
    """A per-env deterministic policy: the same reply for (env, turn) whoever asks when."""
    if turn >= 12:
        return None
    return Reply(text=MOVES[(7 * index + 3 * turn) % len(MOVES)])


@pytest.fixture(scope="module")
def reference():
    with make_pool(SOKOBAN, len(SEEDS)) as pool:
        return _run(pool)


@pytest.fixture(scope="module")
def reference_episodes():
    with make_pool(SOKOBAN, len(SEEDS)) as pool:
        return run_episodes(pool, lambda view: [_reply(j, len_turns) for j, len_turns in zip(view.active, _turns(view))], SEEDS)


def _turns(view):
    return [o.step for o in view.observations]


def _async_policy(req: TurnRequest) -> cf.Future:
    f: cf.Future = cf.Future()
    f.set_result(_reply(req.index, req.turn))
    return f


@pytest.mark.parametrize("backend,kw", [("inprocess", {}), ("subprocess", {"num_workers": 2})])
def test_lockstep_layer_keeps_the_transcripts(reference, backend, kw):
    if backend != "inprocess":
        pytest.importorskip("fastapi")
    with AsyncEnvPool(make_pool(SOKOBAN, len(SEEDS), backend=backend, **kw), max_threads=3) as pool:
        assert _run(pool) == reference


@pytest.mark.parametrize("backend,kw", [("inprocess", {}), ("subprocess", {"num_workers": 2})])
def test_async_runner_gives_the_lockstep_episodes(reference_episodes, backend, kw):
    if backend != "inprocess":
        pytest.importorskip("fastapi")
    with AsyncEnvPool(make_pool(SOKOBAN, len(SEEDS), backend=backend, **kw)) as pool:
        got = run_episodes_async(pool, _async_policy, SEEDS)
    assert [e.model_dump() for e in got] == [e.model_dump() for e in reference_episodes]
    assert any(e.truncated_reason == "policy_stopped" for e in got)  # the policy's None ends an episode


def test_an_env_never_waits_for_another_envs_reply():
    """Env 0's first reply is released only once env 1 has played 5 turns: a lockstep runner
    would wait forever (here: the 10 s guard fails the test)."""
    release = cf.Future()
    env1_turns = []

    def policy(req: TurnRequest) -> cf.Future:
        if req.index == 0:
            if req.turn == 0:
                return release  # held back
            f = cf.Future()
            f.set_result(None)
            return f
        env1_turns.append(req.turn)
        if req.turn == 5:
            release.set_result(Reply(text="up"))
        f = cf.Future()
        f.set_result(Reply(text="left") if req.turn < 6 else None)
        return f

    guard = threading.Timer(10.0, lambda: release.done() or release.set_exception(AssertionError("env 0 waited for env 1")))
    guard.start()
    try:
        with AsyncEnvPool(make_pool(SOKOBAN, 2)) as pool:
            eps = run_episodes_async(pool, policy, [3, 4])
    finally:
        guard.cancel()
    assert env1_turns[:6] == [0, 1, 2, 3, 4, 5]
    assert len(eps[0].turns) == 1 and eps[0].turns[0].response == "up"
    assert len(eps[1].turns) == 6


def test_one_call_in_flight_per_env_and_errors_come_back_as_completions():
    gate = threading.Event()
    with AsyncEnvPool(make_pool(SOKOBAN, 2), max_threads=2) as pool:
        first = pool.step_async(0, "up")  # never reset: the env refuses
        c = first.result(timeout=10)
        assert c.index == 0 and c.op == "step" and c.result is None and isinstance(c.error, ResetNeededError)
        assert pool.poll(timeout=0) == [c]  # poll hands out every finished call once
        assert pool.poll(timeout=0) == []
        pool.reset([1, 2])
        orig = pool.pool.step_env

        def slow(i, a):
            gate.wait(10)
            return orig(i, a)

        pool.pool.step_env = slow
        pool.step_async(1, "up")
        with pytest.raises(ConfigError, match="already has a call in flight"):
            pool.step_async(1, "down")
        with pytest.raises(ConfigError, match="in flight"):
            pool.step(["up", None])
        pool.step_async(0, "left")
        assert pool.busy() == {0, 1}
        gate.set()
        got = []
        while len(got) < 2:
            got += pool.poll(timeout=10)
        assert sorted(c.index for c in got) == [0, 1] and all(c.error is None and c.prompt for c in got)
        assert pool.poll(timeout=0) == []


def test_async_step_on_a_dead_worker_truncates_only_its_envs():
    pytest.importorskip("fastapi")
    with AsyncEnvPool(make_pool(SOKOBAN, 4, backend="subprocess", num_workers=2)) as pool, make_pool(SOKOBAN, 4) as ref:
        seeds = [3, 3, 5, 5]
        assert pool.reset(seeds) == ref.reset(seeds)
        pool.pool.workers[0].kill()  # envs 0 and 2 live on worker 0
        futs = {i: pool.step_async(i, "left") for i in range(4)}
        got = {i: f.result(timeout=60).result for i, f in futs.items()}
        want = ref.step(["left"] * 4)
        for i in (0, 2):
            assert got[i].truncated and "worker 0" in got[i].info.extra["truncated_reason"]
        for i in (1, 3):
            assert got[i] == want[i]
        assert pool.pool.restarts == 1
        assert pool.reset(seeds) == ref.reset(seeds)
