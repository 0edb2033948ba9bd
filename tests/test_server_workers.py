"""`arlarena serve --workers N`: N processes behind one address. Sessions are spread over the
workers and pinned to the one that created them (the id names it); requests for another
worker's session (a new connection, a pool's batch frame) are forwarded and answered exactly as
a single server would; /health and /metrics count every worker; a dead worker is restarted and
its sessions are reported gone."""

from __future__ import annotations

import os
import signal
import time

import gymnasium as gym
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")
httpx = pytest.importorskip("httpx")

import arlarena_envs  # noqa: E402,F401
from arlarena_envs.errors import RemoteEnvError  # noqa: E402
from arlarena_envs.pools import make_pool  # noqa: E402
from arlarena_envs.pools.subprocess import ServerProcess  # noqa: E402
from arlarena_envs.server.client import RemoteEnv, ServerChannel  # noqa: E402
from arlarena_envs.server.workers import owner_of  # noqa: E402

SOKOBAN = "arlarena/Sokoban-v0"
ACTIONS = ["up", "left", "<think>push</think><action>down</action>", "bogus", "right", "RIGHT "]


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess([SOKOBAN], extra_args=["--workers", "2", "--max-sessions", "200"])
    try:
        yield srv
    finally:
        srv.close()


def test_sessions_spread_over_the_workers_and_health_counts_them_all(server):
    before = httpx.get(server.url + "/health").json()
    envs = [RemoteEnv(SOKOBAN, url=server.url) for _ in range(24)]
    try:
        owners = [owner_of(e.session_id) for e in envs]
        assert set(owners) == {0, 1}  # the kernel spread 24 connections over both workers
        for i, e in enumerate(envs):
            e.reset_result(seed=i)
            assert e.step_result("up").observation.step == 1
        health = httpx.get(server.url + "/health").json()
        assert health["sessions"] == before["sessions"] + 24 and health["max_sessions"] == 400
        metrics = httpx.get(server.url + "/metrics").json()
        assert metrics["requests_total"]["step"] >= 24
    finally:
        for e in envs:
            e.close()


@pytest.mark.parametrize("seed", [0, 7])
def test_transcript_parity_when_every_request_lands_anywhere(server, seed):
    """A new WebSocket connection for every step: each may reach the other worker
    and be forwarded; the transcript is the in-process env's."""
    local = gym.make(SOKOBAN)
    remote = gym.make(SOKOBAN, backend="remote", url=server.url)
    try:
        u = remote.unwrapped
        want = [local.reset(seed=seed), local.unwrapped.prompt()]
        got = [remote.reset(seed=seed), u.prompt()]
        for a in ACTIONS:
            want.append(local.step(a))
            # a fresh connection per request: whichever worker accepts it answers
            u.channel._transport.close()
            got.append(remote.step(a))
        want.append(local.unwrapped.oracle_action())
        got.append(u.oracle_action())
        assert got == want
    finally:
        remote.close()
        local.close()


def test_a_batch_over_both_workers_is_answered_in_order(server):
    envs = [RemoteEnv(SOKOBAN, url=server.url) for _ in range(12)]
    while len(envs) < 64 and {owner_of(e.session_id) for e in envs} != {0, 1}:  # the kernel's hash may pick one worker
        envs.append(RemoteEnv(SOKOBAN, url=server.url))
    try:
        assert {owner_of(e.session_id) for e in envs} == {0, 1}
        for i, e in enumerate(envs):
            e.reset_result(seed=i)
        chan = ServerChannel(server.url)
        items = [{"op": "step", "session_id": e.session_id, "action": "left", "request_id": chan.next_request_id()} for e in envs]
        items.insert(5, {"op": "step", "session_id": "1.nosuchsession", "action": "up"})
        reply = chan.send("batch", {"requests": items})
        replies = reply["result"]["replies"]
        assert len(replies) == len(envs) + 1
        assert replies[5]["ok"] is False and replies[5]["error"]["code"] == "unknown_session"
        steps = [r for k, r in enumerate(replies) if k != 5]
        assert all(r["ok"] and r["result"]["observation"]["step"] == 1 for r in steps)
        # a retried batch replays from each owner's cache: nothing steps twice
        again = chan.send("batch", {"requests": items})["result"]["replies"]
        assert [r.get("result") for k, r in enumerate(again) if k != 5] == [r["result"] for r in steps]
        chan.close()
    finally:
        for e in envs:
            e.close()


def test_subprocess_pool_over_multi_worker_servers_matches_inprocess():
    seeds = [11, 11, 42, 42, 5, 5]
    script = [["up", "left", None, "down", "right", "up"], ["left", "oops", "up", None, "down", "right"]]

    def run(pool):
        out = [pool.reset(seeds), pool.prompts(), pool.oracle_actions()]
        for actions in script:
            out.append(pool.step(actions))
        return out

    with make_pool(SOKOBAN, len(seeds)) as ref:
        want = run(ref)
    with make_pool(SOKOBAN, len(seeds), backend="subprocess", num_workers=1, server_args=["--workers", "2"]) as pool:
        assert run(pool) == want


def test_a_dead_worker_is_restarted_and_its_sessions_are_reported_gone():
    srv = ServerProcess([SOKOBAN], extra_args=["--workers", "2"])
    try:
        envs = [RemoteEnv(SOKOBAN, url=srv.url, retries=1) for _ in range(16)]
        by_owner = {o: [e for e in envs if owner_of(e.session_id) == o] for o in (0, 1)}
        assert by_owner[0] and by_owner[1]
        for e in envs:
            e.reset_result(seed=1)
        victim_pid = _worker_pid(srv, 1)
        os.kill(victim_pid, signal.SIGKILL)
        kept = by_owner[0][0]
        assert kept.step_result("up").observation.step == 1  # the other worker's sessions go on
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the supervisor brings worker 1 back
            chan = ServerChannel(srv.url, retries=0)
            try:
                chan.call("step", {"session_id": by_owner[1][0].session_id, "action": "up"})
                raise AssertionError("a session of the killed worker still answered")
            except RemoteEnvError as e:
                if e.code == "unknown_session" and "no session" in str(e):
                    break  # answered by the restarted worker 1: it never heard of the session
            finally:
                chan.close()
            time.sleep(0.2)
        else:
            raise AssertionError("worker 1 did not come back")
        # the kernel spreads connections by a hash of their addresses: 8 of them land on one
        # worker 1 time in 128, so open more until both answered (64 all on one: 2^-63)
        fresh = []
        while len(fresh) < 64 and {owner_of(e.session_id) for e in fresh} != {0, 1}:
            fresh.append(RemoteEnv(SOKOBAN, url=srv.url))
        assert {owner_of(e.session_id) for e in fresh} == {0, 1}  # both workers serve again
        for e in fresh + envs:
            e._closed = True
            e.channel.close()
    finally:
        srv.close()


def _worker_pid(srv: ServerProcess, owner: int) -> int:
    """The pid of worker `owner` of the server `srv` started (a child of its supervisor)."""
    import psutil

    for child in psutil.Process(srv.pid).children():
        cmd = child.cmdline()
        if "--worker-index" in cmd and cmd[cmd.index("--worker-index") + 1] == str(owner):
            return child.pid
    raise AssertionError(f"no worker {owner} under the supervisor {srv.pid}")
