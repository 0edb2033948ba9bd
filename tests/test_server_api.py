"""Env server + remote client: parity with the in-process env, typed errors on bad input,
request-id replay, leases and the reaper, capacity, auth, server loss, and a loopback load test.

Servers run as subprocesses with the same `arlarena serve` command the containers use, on free
ports, and are always killed in the fixtures' teardown."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")
httpx = pytest.importorskip("httpx")

import arlarena_envs  # noqa: E402,F401  (registers the ids)
from arlarena_envs.errors import RemoteEnvError, ResetNeededError, ServerLostError  # noqa: E402
from arlarena_envs.pools.subprocess import ServerProcess  # noqa: E402
from arlarena_envs.server.client import RemoteEnv  # noqa: E402

SOKOBAN = "arlarena/Sokoban-v0"
ACTIONS = ["up", "left", "<think>push</think><action>down</action>", "bogus", "right", "", "<action>up</action><action>up</action>", "RIGHT "]


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess([SOKOBAN], extra_args=["--max-sessions", "400", "--max-action-bytes", "4096"])
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def _ws(server):
    from websockets.sync.client import connect

    return connect(server.url.replace("http://", "ws://") + "/ws", max_size=None)


def _transcript(env, seed, actions, extra_oracle=6):
    out = [env.reset(seed=seed)]
    u = env.unwrapped
    out.append(u.prompt())
    for a in actions:
        step = env.step(a)
        out.append(step)
        out.append(u.prompt())
        if step[2] or step[3]:
            return out
    for _ in range(extra_oracle):  # the oracle's plan, as the leaderboard's oracle policy plays it
        a = u.oracle_action()
        out.append(a)
        if a is None:
            break
        step = env.step(a)
        out.append(step)
        if step[2] or step[3]:
            break
    return out


@pytest.mark.parametrize("transport", ["ws", "http"])
@pytest.mark.parametrize("seed", [0, 7, 123456])
def test_transcript_parity_remote_vs_inprocess(server, transport, seed):
    local = gym.make(SOKOBAN)
    remote = gym.make(SOKOBAN, backend="remote", url=server.url, transport=transport)
    try:
        assert isinstance(remote.unwrapped, RemoteEnv)
        assert _transcript(remote, seed, ACTIONS) == _transcript(local, seed, ACTIONS)
        # the typed API is there too
        assert remote.unwrapped.reset_result(seed=seed + 1) == local.unwrapped.reset_result(seed=seed + 1)
        assert remote.unwrapped.step_result("down") == local.unwrapped.step_result("down")
        assert remote.unwrapped.oracle_action() == local.unwrapped.oracle_action()
    finally:
        remote.close()
        local.close()


def test_protocol_overrides_and_split_travel(server):
    local = arlarena_envs.make(SOKOBAN, split="eval", max_steps=3).unwrapped
    remote = RemoteEnv(SOKOBAN, url=server.url, split="eval", max_steps=3)
    try:
        assert remote.protocol.max_steps == 3 and remote.split == "eval"
        assert remote.reset_result(seed=2) == local.reset_result(seed=2)
        for _ in range(3):
            assert remote.step_result("up") == local.step_result("up")
        with pytest.raises(ResetNeededError):
            remote.step_result("up")  # truncated at max_steps: reset needed, a typed error
    finally:
        remote.close()


def _err(resp):
    body = resp.json()
    assert body["ok"] is False and body["error"]["message"]
    assert body["error"]["status"] == resp.status_code
    return body["error"]["code"]


def test_http_bad_input_gives_typed_4xx_and_server_keeps_serving(server, http):
    sid = http.post("/sessions", json={"env_id": SOKOBAN}).json()["result"]["session_id"]
    cases = [
        (http.post(f"/sessions/{sid}/step", content=b"{not json"), 400, "malformed"),
        (http.post(f"/sessions/{sid}/step", content=b"[1, 2]"), 400, "malformed"),
        (http.post(f"/sessions/{sid}/step", json={"action": 5}), 422, "invalid_request"),
        (http.post(f"/sessions/{sid}/step", json={"act": "up"}), 422, "invalid_request"),
        (http.post(f"/sessions/{sid}/reset", json={"seed": "seven"}), 422, "invalid_request"),
        (http.post(f"/sessions/{sid}/reset", json={"seed": -1}), 422, "invalid_request"),
        (http.post(f"/sessions/{sid}/step", json={"action": "up"}), 409, "reset_needed"),
        (http.post("/sessions/nope/step", json={"action": "up"}), 404, "unknown_session"),
        (http.post("/sessions", json={"env_id": "arlarena/Nope-v0"}), 404, "unknown_env"),
        (http.post("/sessions", json={"env_id": SOKOBAN, "env_kwargs": {"bogus": 1}}), 422, "invalid_request"),
        (http.post(f"/sessions/{sid}/reset", json={"seed": 1, "options": {"task_index": -3}}), 400, "env_error"),
        (http.get(f"/sessions/{sid}/oracle"), 409, "reset_needed"),
    ]
    for resp, status, code in cases:
        assert resp.status_code == status, resp.text
        assert _err(resp) == code
    assert http.post(f"/sessions/{sid}/reset", json={"seed": 1}).status_code == 200
    big = "x" * 5000
    resp = http.post(f"/sessions/{sid}/step", json={"action": big})
    assert resp.status_code == 413 and _err(resp) == "action_too_large"
    assert "4096" in resp.json()["error"]["message"]
    # still serving, and the session is intact
    ok = http.post(f"/sessions/{sid}/step", json={"action": "up"}).json()
    assert ok["ok"] is True and ok["result"]["observation"]["step"] == 1
    assert http.post(f"/sessions/{sid}/close").json()["result"]["closed"] is True
    resp = http.post(f"/sessions/{sid}/step", json={"action": "up"})
    assert resp.status_code == 410 and _err(resp) == "session_closed"
    assert http.get("/health").json()["status"] == "ok"


def test_ws_bad_frames_keep_the_connection(server):
    with _ws(server) as ws:
        for frame, code in [
            ("{bad json", "malformed"),
            ('"a string"', "malformed"),
            ('{"op": "fly"}', "invalid_request"),
            ('{"op": "step", "session_id": "x", "action": {"a": 1}}', "invalid_request"),
            ('{"op": "step", "session_id": "missing", "action": "up"}', "unknown_session"),
            (b"\xff\xfe not utf8", "malformed"),
        ]:
            ws.send(frame)
            reply = json.loads(ws.recv(timeout=10))
            assert reply["ok"] is False and reply["error"]["code"] == code, reply
        ws.send(json.dumps({"op": "create", "env_id": SOKOBAN}))
        created = json.loads(ws.recv(timeout=10))
        assert created["ok"] is True
        sid = created["result"]["session_id"]
        ws.send(json.dumps({"op": "close", "session_id": sid}))
        assert json.loads(ws.recv(timeout=10))["ok"] is True


def test_request_id_replay_returns_the_same_step_and_never_steps_twice(server):
    with _ws(server) as ws:
        def call(**msg):
            ws.send(json.dumps(msg))
            return ws.recv(timeout=10)

        sid = json.loads(call(op="create", env_id=SOKOBAN, request_id="c-1", client_id="client-a1"))["result"]["session_id"]
        again = json.loads(call(op="create", env_id=SOKOBAN, request_id="c-1", client_id="client-a1"))["result"]["session_id"]
        assert again == sid  # a retried create opens no second session
        call(op="reset", session_id=sid, seed=3, request_id="r-1")
        first = call(op="step", session_id=sid, action="down", request_id="s-1")
        replay = json.loads(call(op="step", session_id=sid, action="down", request_id="s-1"))
        assert replay.pop("replayed") is True and replay == json.loads(first)  # marked: it had been applied
        assert json.loads(first)["result"]["observation"]["step"] == 1
        nxt = json.loads(call(op="step", session_id=sid, action="down", request_id="s-2"))
        assert nxt["result"]["observation"]["step"] == 2  # the replay did not step the env
    # a retry on a new connection (the client's reconnect path) also gets the stored reply
    with _ws(server) as ws2:
        ws2.send(json.dumps({"op": "step", "session_id": sid, "action": "down", "request_id": "s-2"}))
        assert json.loads(ws2.recv(timeout=10)) == {**nxt, "replayed": True}
        ws2.send(json.dumps({"op": "close", "session_id": sid}))
        ws2.recv(timeout=10)


def test_schema_metrics_health(server, http):
    schema = http.get("/schema").json()
    assert SOKOBAN in schema["env_ids"] and schema["specs"][SOKOBAN]["id"] == SOKOBAN
    assert {"StepRequest", "StepResult", "Reply", "ErrorBody"} <= set(schema["messages"])
    assert schema["error_codes"]["action_too_large"] == 413
    health = http.get("/health").json()
    assert health["env_ids"] == [SOKOBAN] and health["max_sessions"] == 400
    metrics = http.get("/metrics").json()
    assert metrics["requests_total"].get("create", 0) >= 1


def test_capacity_limit_gives_a_clear_error():
    srv = ServerProcess([SOKOBAN], extra_args=["--max-sessions", "2"])
    try:
        envs = [RemoteEnv(SOKOBAN, url=srv.url) for _ in range(2)]
        with pytest.raises(RemoteEnvError) as e:
            RemoteEnv(SOKOBAN, url=srv.url)
        assert e.value.code == "capacity" and e.value.status == 503 and "--max-sessions" in str(e.value)
        envs[0].close()
        envs.append(RemoteEnv(SOKOBAN, url=srv.url))  # a freed slot can be used again
        for env in envs[1:]:
            env.close()
    finally:
        srv.close()


def test_reaper_frees_idle_sessions():
    # the lease is long enough that the busy session (used every 0.1 s) survives a loaded
    # machine's stalls: the test then cannot depend on scheduling
    srv = ServerProcess([SOKOBAN], extra_args=["--idle-timeout", "4"])
    try:
        env = RemoteEnv(SOKOBAN, url=srv.url)
        assert env.lease_s == pytest.approx(4.0)
        env.reset_result(seed=1)
        busy = RemoteEnv(SOKOBAN, url=srv.url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # keep one session alive by using it
            busy.reset_result(seed=2)
            if httpx.get(srv.url + "/metrics").json()["sessions_reaped_total"] >= 1:
                break
            time.sleep(0.1)
        metrics = httpx.get(srv.url + "/metrics").json()
        assert metrics["sessions_reaped_total"] == 1 and metrics["sessions_active"] == 1
        with pytest.raises(RemoteEnvError) as e:
            env.step_result("up")
        assert e.value.code == "unknown_session" and "reaper" in str(e.value)
        busy.close()
    finally:
        srv.close()


def test_reaper_is_on_by_default():
    from arlarena_envs.server.app import ServerConfig, SessionManager

    cfg = ServerConfig(env_ids=[SOKOBAN])
    assert cfg.idle_timeout_s and cfg.idle_timeout_s > 0
    mgr = SessionManager(cfg)
    status, body = mgr.handle_obj({"op": "create", "env_id": SOKOBAN})
    sid = json.loads(body)["result"]["session_id"]
    assert mgr.reap(now=time.monotonic() + cfg.idle_timeout_s - 1) == 0
    assert mgr.reap(now=time.monotonic() + cfg.idle_timeout_s + 1) == 1
    status, body = mgr.handle_obj({"op": "reset", "session_id": sid})
    assert status == 404 and "reaper" in json.loads(body)["error"]["message"]


def test_token_auth():
    srv = ServerProcess([SOKOBAN], token="s3cret-token")
    try:
        assert httpx.get(srv.url + "/health").status_code == 200  # health checks need no token
        r = httpx.post(srv.url + "/sessions", json={"env_id": SOKOBAN})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        with pytest.raises(RemoteEnvError) as e:
            RemoteEnv(SOKOBAN, url=srv.url, token="wrong")
        assert e.value.code == "unauthorized"
        env = RemoteEnv(SOKOBAN, url=srv.url, token="s3cret-token")
        env.reset_result(seed=0)
        env.close()
        env = RemoteEnv(SOKOBAN, url=srv.url, token="s3cret-token", transport="http")
        env.reset_result(seed=0)
        env.close()
    finally:
        srv.close()


def test_non_loopback_bind_requires_a_token():
    env = {k: v for k, v in os.environ.items() if k != "ARLARENA_SERVER_TOKEN"}
    r = subprocess.run(
        [sys.executable, "-m", "arlarena_envs.cli", "serve", SOKOBAN, "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert r.returncode == 1 and "needs a token" in r.stderr


def test_server_loss_gives_a_typed_error():
    srv = ServerProcess([SOKOBAN])
    try:
        env = RemoteEnv(SOKOBAN, url=srv.url, retries=2, backoff=0.01)
        env.reset_result(seed=4)
        srv.kill()
        with pytest.raises(ServerLostError) as e:
            env.step_result("up")
        assert isinstance(e.value, RemoteEnvError) and e.value.code == "server_lost"
        env.close()  # closing a client of a dead server is fine
    finally:
        srv.close()


def test_load_256_concurrent_sessions(server):
    """256 sessions open at once on one server, each playing a few steps (how fast: see
    benchmarks/bench_server.py; a wall-time bound here would fail on a loaded machine)."""
    n = 256

    def open_one(i):
        env = RemoteEnv(SOKOBAN, url=server.url, timeout=30)
        env.reset_result(seed=i)
        return env

    with cf.ThreadPoolExecutor(max_workers=32) as ex:
        envs = list(ex.map(open_one, range(n)))
        active = httpx.get(server.url + "/health").json()["sessions"]
        assert active >= n

        def play(env):
            steps = []
            for a in ("up", "left", "down", "right"):
                r = env.step_result(a)
                steps.append(r.observation.step)
                if r.done:
                    break
            return steps

        played = list(ex.map(play, envs))
        assert all(s == list(range(1, len(s) + 1)) for s in played)
        assert sum(len(s) for s in played) >= 3 * n
        list(ex.map(lambda e: e.close(), envs))
    assert httpx.get(server.url + "/health").json()["sessions"] <= active - n


def test_batch_request_answers_each_item_in_order(server):
    with _ws(server) as ws:
        def call(**msg):
            ws.send(json.dumps(msg))
            return json.loads(ws.recv(timeout=10))

        sids = [call(op="create", env_id=SOKOBAN)["result"]["session_id"] for _ in range(2)]
        for k, sid in enumerate(sids):
            call(op="reset", session_id=sid, seed=k)
        batch = [
            {"op": "step", "session_id": sids[0], "action": "up", "request_id": "b-0"},
            {"op": "step", "session_id": sids[1], "action": "left", "request_id": "b-1"},
            {"op": "step", "session_id": "nope", "action": "left"},
            {"op": "batch", "requests": []},
        ]
        reply = call(op="batch", requests=batch)
        replies = reply["result"]["replies"]
        assert [r["ok"] for r in replies] == [True, True, False, False]
        assert replies[2]["error"]["code"] == "unknown_session" and replies[3]["error"]["code"] == "invalid_request"
        local = arlarena_envs.make(SOKOBAN).unwrapped
        local.reset_result(seed=1)
        assert replies[1]["result"] == json.loads(local.step_result("left").model_dump_json())
        again = call(op="batch", requests=batch[:2])  # replayed items: same results, no second step
        assert again["result"]["replies"] == [{**r, "replayed": True} for r in replies[:2]]
        for sid in sids:
            call(op="close", session_id=sid)


def _registered_ids():
    from arlarena_envs.registry import load_specs

    return sorted(load_specs())


WEBSHOP_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "webshop-1000"


@pytest.fixture(scope="module")
def all_server():
    saved = os.environ.get("ARLARENA_WEBSHOP_DATA")
    if saved is None and WEBSHOP_DATA.is_dir():  # the original-data WebShop, here and in the server
        os.environ["ARLARENA_WEBSHOP_DATA"] = str(WEBSHOP_DATA)
    srv = ServerProcess(["--all"])  # default offload "auto": builds and resets in threads
    try:
        yield srv
    finally:
        srv.close()
        if saved is None:
            os.environ.pop("ARLARENA_WEBSHOP_DATA", None)


@pytest.mark.parametrize("env_id", _registered_ids())
def test_every_registered_env_is_servable_unchanged(all_server, env_id):
    from arlarena_envs.errors import DataError, MissingDependencyError

    try:
        local = arlarena_envs.make(env_id).unwrapped
        first = local.reset_result(seed=3)
    except (MissingDependencyError, DataError) as e:
        pytest.skip(f"{env_id} cannot run here: {e}")
    remote = RemoteEnv(env_id, url=all_server.url, timeout=120)
    try:
        assert remote.reset_result(seed=3) == first
        assert remote.prompt() == local.prompt()
        for _ in range(3):
            a = local.oracle_action()
            assert remote.oracle_action() == a
            a = a or (first[0].admissible_actions or ["look"])[0]
            want = local.step_result(a)
            assert remote.step_result(a) == want
            if want.done:
                break
    finally:
        remote.close()


def test_client_reconnects_after_a_dropped_connection(server):
    env = RemoteEnv(SOKOBAN, url=server.url)
    local = arlarena_envs.make(SOKOBAN).unwrapped
    try:
        assert env.reset_result(seed=8) == local.reset_result(seed=8)
        env.channel._transport.ws.close()  # the connection drops between two steps
        assert env.step_result("up") == local.step_result("up")  # reconnected; stepped once
        assert env.channel.reconnected
        assert env.step_result("left") == local.step_result("left")
    finally:
        env.close()
