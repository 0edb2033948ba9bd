"""Env pools: transcript parity of every local backend with the in-process pool (GRPO groups of
the same seed), and the dead-worker contract: the worker is restarted, its mid-episode envs come
back truncated with a reason, the other envs keep going."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")

from arlarena_envs.errors import ConfigError  # noqa: E402
from arlarena_envs.pools import make_pool  # noqa: E402
from arlarena_envs.pools.subprocess import ServerProcess  # noqa: E402

SOKOBAN = "arlarena/Sokoban-v0"
SEEDS = [11, 11, 11, 42, 42, 42]  # two GRPO groups of G=3
SCRIPT = [
    ["up", "left", None, "down", "<think>t</think><action>right</action>", "up"],
    ["left", "oops", "up", None, "down", "right"],
    ["down", "down", "right", "left", None, "up"],
]


def _run(pool, seeds=SEEDS, script=SCRIPT):
    out = [pool.reset(seeds), pool.prompts(), pool.oracle_actions()]
    for actions in script:
        out.append(pool.step(actions))
        out.append(pool.prompts())
    for _ in range(4):  # then the oracle plays every env
        acts = pool.oracle_actions()
        out.append(acts)
        out.append(pool.step(acts))
    return out


@pytest.fixture(scope="module")
def reference():
    with make_pool(SOKOBAN, len(SEEDS)) as pool:
        return _run(pool)


def test_groups_share_their_first_state(reference):
    first = reference[0]
    assert len({first[i][0].state_hash for i in range(3)}) == 1
    assert first[0][0].state_hash != first[3][0].state_hash


@pytest.mark.parametrize("num_workers", [1, 2])
def test_subprocess_pool_parity(reference, num_workers):
    with make_pool(SOKOBAN, len(SEEDS), backend="subprocess", num_workers=num_workers) as pool:
        assert _run(pool) == reference


def test_remote_pool_parity_over_two_servers(reference):
    servers = [ServerProcess([SOKOBAN]) for _ in range(2)]
    try:
        with make_pool(SOKOBAN, len(SEEDS), backend="remote", urls=[s.url for s in servers]) as pool:
            assert _run(pool) == reference
    finally:
        for s in servers:
            s.close()


def test_subprocess_pool_restarts_a_dead_worker_and_truncates_its_episodes():
    with make_pool(SOKOBAN, 4, backend="subprocess", num_workers=2) as pool, make_pool(SOKOBAN, 4) as ref:
        seeds = [3, 3, 5, 5]
        assert pool.reset(seeds) == ref.reset(seeds)
        assert pool.step(["up"] * 4) == ref.step(["up"] * 4)
        dead = pool.workers[0]
        old_pid = dead.pid
        dead.kill()  # SIGKILL mid-episode: envs 0 and 2 live on worker 0
        got = pool.step(["left"] * 4)
        want = ref.step(["left"] * 4)
        for i in (0, 2):
            assert got[i].truncated and not got[i].terminated and got[i].reward == 0.0
            assert "worker 0" in got[i].info.extra["truncated_reason"]
        for i in (1, 3):
            assert got[i] == want[i]  # the other worker's envs keep going
        assert pool.restarts == 1 and dead.alive() and dead.pid != old_pid
        # the next episode runs on the restarted worker, identical again
        assert pool.reset(seeds) == ref.reset(seeds)
        assert pool.step(["down"] * 4) == ref.step(["down"] * 4)


def test_inactive_env_on_a_dead_worker_is_truncated_at_its_next_step():
    with make_pool(SOKOBAN, 2, backend="subprocess", num_workers=2) as pool:
        pool.reset([1, 2])
        pool.workers[1].kill()
        first = pool.step(["up", None])  # env 1 is skipped this round: nothing noticed
        assert first[1] is None and not first[0].truncated
        second = pool.step([None, "up"])
        assert second[1].truncated and second[1].info.extra["truncated_reason"]


def test_pool_arguments_are_checked():
    with pytest.raises(ConfigError):
        make_pool(SOKOBAN, 2, backend="nope")
    with pytest.raises(ConfigError):
        make_pool(SOKOBAN, 2, backend="remote", urls=[])
    with make_pool(SOKOBAN, 2, backend="subprocess", num_workers=1) as pool:
        with pytest.raises(ConfigError):
            pool.reset([1])
        with pytest.raises(ConfigError):
            pool.step(["up"])


@pytest.mark.slow
def test_ray_pool_parity_and_actor_loss(reference):
    ray = pytest.importorskip("ray")
    with make_pool(SOKOBAN, len(SEEDS), backend="ray", num_workers=2, ray_init_kwargs={"num_cpus": 2}) as pool:
        assert _run(pool) == reference
        pool.reset(SEEDS)
        victim = pool.actors[1]
        ray.kill(victim, no_restart=True)
        _await_actor_death(ray, victim)  # ray.kill is asynchronous: the loss is certain only now
        got = pool.step(["up"] * len(SEEDS))
        lost = [i for i, (a, _) in enumerate(pool.assignment) if a == 1]
        assert all(got[i].truncated and "ray actor 1" in got[i].info.extra["truncated_reason"] for i in lost)
        assert not any(got[i].truncated for i in range(len(SEEDS)) if i not in lost)
        assert pool.restarts == 1
        assert pool.reset(SEEDS) == reference[0]


def _await_actor_death(ray, actor, timeout_s: float = 60.0) -> None:
    """Block until calls on `actor` fail with RayActorError (bounded; no sleep-based guess)."""
    from ray.exceptions import GetTimeoutError, RayActorError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(actor.pid.remote(), timeout=max(0.1, deadline - time.monotonic()))
        except RayActorError:
            return
        except GetTimeoutError:
            break
    raise AssertionError(f"ray actor still answering {timeout_s:g} s after ray.kill")
