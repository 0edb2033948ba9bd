"""Hostile and careless clients: every bad input gets a typed error, no client reaches the
filesystem through env kwargs, slow clients cannot starve the server, and every fault (reaped
sessions, lost servers, one env of a batch needing a reset) is recoverable.

Most checks drive `SessionManager` in-process (what the server runs per request); the transport
ones run a real `arlarena serve` subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")
httpx = pytest.importorskip("httpx")

import arlarena_envs  # noqa: E402
from arlarena_envs.contract import ParsedAction  # noqa: E402
from arlarena_envs.errors import ArlArenaError, RemoteEnvError, ResetNeededError, ServerLostError  # noqa: E402
from arlarena_envs.pools import PoolStepError, make_pool  # noqa: E402
from arlarena_envs.pools.subprocess import ServerProcess  # noqa: E402
from arlarena_envs.server.app import ServerConfig, SessionManager  # noqa: E402
from arlarena_envs.server.client import RemoteEnv  # noqa: E402
from arlarena_envs.server.messages import MAX_JSON_DEPTH, json_nesting_depth  # noqa: E402

SOKOBAN = "arlarena/Sokoban-v0"


def _mgr(**kw) -> SessionManager:
    return SessionManager(ServerConfig(env_ids=[SOKOBAN], **kw))


def _call(mgr, **req):
    status, body = mgr.handle_obj(req)
    return status, json.loads(body)


def _session(mgr, **kw) -> str:
    status, body = _call(mgr, op="create", env_id=SOKOBAN, **kw)
    assert status == 200, body
    return body["result"]["session_id"]


@pytest.fixture(scope="module")
def server():
    srv = ServerProcess([SOKOBAN], extra_args=["--max-action-bytes", "4096", "--header-timeout", "1.5"])
    try:
        yield srv
    finally:
        srv.close()


# ------------------------------------------------------------------------------ frames


def test_nesting_depth_is_measured_without_parsing():
    assert json_nesting_depth('{"a": [1, {"b": [2]}]}') == 4
    assert json_nesting_depth('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"["}') == 1
    assert json_nesting_depth("[" * 5000) == 5000
    assert json_nesting_depth("[1]," * 100 + "[[2]]") == 2


@pytest.mark.parametrize("raw", ["[" * 5000, '{"op": "create", "env_id": "x", "env_kwargs": {"a": ' + "[" * 900 + "]" * 900 + "}}"])
def test_deep_json_is_a_typed_error_in_process(raw):
    status, body = _mgr().handle_text(raw)
    reply = json.loads(body)
    assert status == 413 and reply["error"]["code"] == "request_too_large" and str(MAX_JSON_DEPTH) in reply["error"]["message"]


def test_deep_json_over_http_and_websocket(server):
    deep = "[" * 5000 + "]" * 5000
    r = httpx.post(server.url + "/sessions", content=deep)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    from websockets.sync.client import connect

    with connect(server.url.replace("http", "ws") + "/ws") as ws:
        ws.send(deep)
        assert json.loads(ws.recv(timeout=10))["error"]["code"] == "request_too_large"
        ws.send(json.dumps({"op": "create", "env_id": SOKOBAN}))  # the connection is still usable
        assert json.loads(ws.recv(timeout=10))["ok"] is True
    assert httpx.get(server.url + "/health").status_code == 200


def test_oversize_body_is_refused_before_it_is_read(server):
    r = httpx.post(server.url + "/sessions", content=b"x" * (16 * 2**20 + 4 * 4096 + 1))
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_parsed_action_counts_against_the_action_limit():
    mgr = _mgr(max_action_bytes=1000)
    sid = _session(mgr)
    _call(mgr, op="reset", session_id=sid, seed=1)
    for big in (ParsedAction(action="u" * 2000, status="ok", format_valid=True), ParsedAction(action="up", status="ok", format_valid=True, think="t" * 2000)):
        status, body = _call(mgr, op="step", session_id=sid, action=big.model_dump(mode="json"))
        assert status == 413 and body["error"]["code"] == "action_too_large"
    status, body = _call(mgr, op="step", session_id=sid, action=ParsedAction(action="up", status="ok", format_valid=True).model_dump(mode="json"))
    assert status == 200 and body["result"]["observation"]["step"] == 1  # the refused ones never stepped


def test_parsed_action_obeys_max_action_chars_in_process():
    env = arlarena_envs.make(SOKOBAN, max_action_chars=10).unwrapped
    env.reset_result(seed=1)
    r = env.step_result(ParsedAction(action="up" + " " * 20, status="ok", format_valid=True))
    assert r.info.parse_status.value == "truncated" and r.info.action is None
    assert len(env.prompt()) < 2000  # the oversize text is not carried into the next prompt
    r = env.step_result(ParsedAction(action="up", status="ok", format_valid=True, think="t" * 20))
    assert r.info.parse_status.value == "truncated"
    assert env.step_result(ParsedAction(action="up", status="ok", format_valid=True)).info.action == "up"


# ------------------------------------------------------------------------------ types


BAD_SEEDS = ["1", True, 1.0, "1_0", -1, [1], {"s": 1}]


@pytest.mark.parametrize("seed", BAD_SEEDS)
def test_seed_types_are_strict_everywhere(server, seed):
    local = arlarena_envs.make(SOKOBAN).unwrapped
    with pytest.raises(ValueError):
        local.reset_result(seed=seed)
    remote = RemoteEnv(SOKOBAN, url=server.url)
    try:
        with pytest.raises(ValueError) as e:
            remote.reset_result(seed=seed)
        assert isinstance(e.value, ArlArenaError)
    finally:
        remote.close()
    sid = httpx.post(server.url + "/sessions", json={"env_id": SOKOBAN}).json()["result"]["session_id"]
    r = httpx.post(f"{server.url}/sessions/{sid}/reset", json={"seed": seed})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_numpy_seed_travels_as_an_int(server):
    np = pytest.importorskip("numpy")
    remote = RemoteEnv(SOKOBAN, url=server.url)
    try:
        assert remote.reset_result(seed=np.int64(5)) == arlarena_envs.make(SOKOBAN).unwrapped.reset_result(seed=5)
    finally:
        remote.close()


# ------------------------------------------------------------------------------ replay


def test_replayed_request_id_with_another_body_is_a_conflict():
    mgr = _mgr()
    sid = _session(mgr)
    _call(mgr, op="reset", session_id=sid, seed=3, request_id="r1")
    assert _call(mgr, op="step", session_id=sid, action="up", request_id="s1")[0] == 200
    status, body = _call(mgr, op="step", session_id=sid, action="down", request_id="s1")
    assert status == 409 and body["error"]["code"] == "request_id_conflict"
    status, body = _call(mgr, op="reset", session_id=sid, seed=4, request_id="r1")
    assert status == 409
    status, body = _call(mgr, op="step", session_id=sid, action="up", request_id="s1")
    assert status == 200 and body["replayed"] is True and body["result"]["observation"]["step"] == 1


def test_create_replay_is_scoped_per_client():
    mgr = _mgr()
    a = _session(mgr, request_id="1", client_id="client-aaaa")
    b = _session(mgr, request_id="1", client_id="client-bbbb")
    c = _session(mgr, request_id="1")  # no client id (HTTP, no connection scope): no replay at all
    d = _session(mgr, request_id="1")
    assert len({a, b, c, d}) == 4
    assert _session(mgr, request_id="1", client_id="client-aaaa") == a  # the same client's retry
    status, body = _call(mgr, op="create", env_id=SOKOBAN, request_id="1", client_id="client-aaaa", env_kwargs={"split": "eval"})
    assert status == 409 and body["error"]["code"] == "request_id_conflict"


def test_retried_close_gets_the_stored_reply():
    mgr = _mgr()
    sid = _session(mgr)
    first = _call(mgr, op="close", session_id=sid, request_id="c1")
    again = _call(mgr, op="close", session_id=sid, request_id="c1")
    assert first[0] == again[0] == 200 and again[1].pop("replayed") is True and again[1] == first[1]
    status, body = _call(mgr, op="close", session_id=sid, request_id="c2")  # a new close: it is closed
    assert status == 410 and body["error"]["code"] == "session_closed"


# ------------------------------------------------------------------------------ env kwargs


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cache_dir": "/tmp/arlarena-owned"},
        {"data_dir": "/etc"},
        {"verify_data": False},
        {"spacy_model": "evil_model"},
        {"search_depth": "6"},
        {"search_depth": 1000},
        {"num_boxes": True},
        {"dim_room": [6, 60]},
        {"dim_room": [6.0, 6.0]},
        {"max_steps": "3"},
        {"max_steps": 3.0},
        {"split": "nope"},
        {"url": "http://x"},
    ],
)
def test_client_kwargs_outside_the_spec_are_refused(kwargs):
    status, body = _call(_mgr(), op="create", env_id=SOKOBAN, env_kwargs=kwargs)
    assert status == 422 and body["error"]["code"] == "invalid_request", body


def test_spec_client_kwargs_and_operator_allowance():
    mgr = _mgr()
    assert _call(mgr, op="create", env_id=SOKOBAN, env_kwargs={"search_depth": 6, "dim_room": [7, 7], "split": "eval", "max_steps": 3, "invalid_action_policy": "noop"})[0] == 200
    allowed = _mgr(allow_kwargs=frozenset({"search_depth"}))
    assert _call(allowed, op="create", env_id=SOKOBAN, env_kwargs={"search_depth": 200})[0] == 200
    from arlarena_envs.errors import ConfigError

    with pytest.raises(ConfigError):
        ServerConfig(env_ids=[SOKOBAN], allow_kwargs=frozenset({"url"}))


def test_serve_allow_kwarg_flag():
    srv = ServerProcess([SOKOBAN], extra_args=["--allow-kwarg", "search_depth"])
    try:
        schema = httpx.get(srv.url + "/schema").json()
        assert schema["limits"]["allow_kwargs"] == ["search_depth"] and schema["limits"]["offload"] == "auto"
        env = RemoteEnv(SOKOBAN, url=srv.url, search_depth=150)  # beyond the spec's range: the operator allowed it
        env.close()
        with pytest.raises(ValueError):
            RemoteEnv(SOKOBAN, url=srv.url, num_boxes=9)
    finally:
        srv.close()


def test_every_spec_keeps_paths_and_code_loading_away_from_clients():
    from arlarena_envs.registry import load_specs

    for spec in load_specs().values():
        assert not {"cache_dir", "data_dir", "verify_data", "spacy_model", "official_allow_partial"} & set(spec.client_kwargs), spec.id
        assert spec.client_kwargs, f"{spec.id} declares no client_kwargs"


def test_data_variants_are_bounded():
    mgr = SessionManager(ServerConfig(env_ids=["arlarena/WebShop-v0"], max_env_variants=2))
    spec = mgr.specs["arlarena/WebShop-v0"]
    mgr._claim_variant(spec, {"catalogue_seed": 0})  # the spec's default: always served
    mgr._claim_variant(spec, {"catalogue_seed": 1})
    mgr._claim_variant(spec, {"catalogue_seed": 1})  # already held
    from arlarena_envs.server.app import ServerError

    with pytest.raises(ServerError) as e:
        mgr._claim_variant(spec, {"catalogue_seed": 2})
    assert e.value.code.value == "capacity" and "--max-env-variants" in str(e.value)


def test_slow_ops_run_off_the_event_loop_by_default():
    mgr = _mgr()
    assert mgr.config.offload == "auto"
    assert mgr.needs_thread({"op": "create", "env_id": SOKOBAN}) and mgr.needs_thread({"op": "reset", "session_id": "x"})
    assert not mgr.needs_thread({"op": "step", "session_id": "x", "action": "up"})
    assert mgr.needs_thread({"op": "batch", "requests": [{"op": "step"}, {"op": "reset"}]})
    sid = _session(mgr)
    with mgr.sessions[sid].lock:  # busy in a thread: a step must wait in a thread too
        assert mgr.needs_thread({"op": "step", "session_id": sid, "action": "up"})
    assert not mgr.needs_thread({"op": "step", "session_id": sid, "action": "up"})
    mgr.slow_share[SOKOBAN] = 0.9  # an env whose steps turned out slow steps in threads
    assert mgr.needs_thread({"op": "step", "session_id": sid, "action": "up"})


def test_a_few_preempted_steps_do_not_send_a_fast_env_to_threads():
    from arlarena_envs.server.app import SLOW_STEP_S, slow_share

    share = None
    for k in range(400):  # every 10th step preempted for 50 ms (a busy machine), the rest fast
        share = slow_share(share, 0.05 if k % 10 == 0 else SLOW_STEP_S / 20)
    assert share < 0.5
    for _ in range(40):  # an env that now blocks on most steps: its median step is slow
        share = slow_share(share, SLOW_STEP_S * 5)
    assert share > 0.5


_SLOW_CREATE_ENV = """
import os, time
from pathlib import Path
from arlarena_envs.sokoban import SokobanEnv

class SlowCreateEnv(SokobanEnv):
    \"\"\"Sokoban whose construction, once the test arms it, waits until the test releases it:
    a create that is slow for exactly as long as the test needs (a catalogue build, a game
    generation), whatever the machine's speed.\"\"\"

    def __init__(self, **kwargs):
        gate = Path(os.environ["ARLARENA_TEST_GATE"])
        if (gate / "armed").exists():
            (gate / "entered").touch()
            deadline = time.monotonic() + 60
            while not (gate / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        super().__init__(**kwargs)
"""


def test_health_answers_while_a_create_is_slow(tmp_path, monkeypatch):
    """Creating an env can take seconds (a WebShop catalogue build, a TextWorld game generation);
    with the default offload the create runs in a thread and /health (what container health
    checks poll) keeps answering meanwhile. The create is held open by a gate until the test has
    counted its health replies, so the check does not depend on how fast this machine builds.
    On the event loop no health reply could come back until the create ends."""
    import threading

    (tmp_path / "slow_create_env.py").write_text(_SLOW_CREATE_ENV)
    (tmp_path / "SlowCreate-v0.yaml").write_text(
        "id: arlarena/SlowCreate-v0\nentry_point: slow_create_env:SlowCreateEnv\n"
        "protocol: {template_id: sokoban/v1}\nsplits: {train: {kind: seeds, stop: 3}}\n"
    )
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv("ARLARENA_TEST_GATE", str(gate))
    monkeypatch.setenv("ARLARENA_REGISTRY_PATH", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    srv = ServerProcess(["arlarena/SlowCreate-v0"])
    try:
        (gate / "armed").touch()
        created: list = []
        creator = threading.Thread(target=lambda: created.append(
            httpx.post(srv.url + "/sessions", json={"env_id": "arlarena/SlowCreate-v0"}, timeout=120)), daemon=True)
        creator.start()
        deadline = time.monotonic() + 30
        while not (gate / "entered").exists():  # the create is inside the env's constructor now
            assert time.monotonic() < deadline, "the create never reached the env"
            time.sleep(0.01)
        with httpx.Client(timeout=10) as c:
            for _ in range(5):
                assert c.get(srv.url + "/health").status_code == 200
        assert not created, "the create ended before its gate opened"
        (gate / "release").touch()
        creator.join(timeout=60)
        assert created and created[0].status_code == 200, created
    finally:
        srv.close()


def test_container_images_need_no_offload_flag_for_health():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "containers"
    compose = (root / "compose.yaml").read_text()
    assert '"--offload", "none"' not in compose and "--offload none" not in compose
    for dockerfile in root.glob("*/Dockerfile"):
        text = dockerfile.read_text()
        assert "HEALTHCHECK" in text and "--offload none" not in text
    import argparse

    from arlarena_envs.server.cli import add_serve_arguments

    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    assert p.parse_args([SOKOBAN]).offload == "auto" and p.parse_args([SOKOBAN, "--offload"]).offload == "all"


# ------------------------------------------------------------------------------ slow clients


def test_idle_and_half_open_connections_are_closed(server):
    idle = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    half = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    half.sendall(b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Le")
    try:
        for s in (idle, half):
            s.settimeout(10)
            t0 = time.monotonic()
            assert s.recv(100) == b""  # closed by the server (header deadline 1.5 s)
            assert time.monotonic() - t0 < 8
    finally:
        idle.close()
        half.close()


def test_connection_cap_drops_the_oldest_idle_connection():
    srv = ServerProcess([SOKOBAN], extra_args=["--max-connections", "40", "--header-timeout", "60"])
    port = int(srv.url.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        env = RemoteEnv(SOKOBAN, url=srv.url)  # over the cap: room is made, the client is served
        env.reset_result(seed=2)
        assert httpx.get(srv.url + "/health", timeout=10).status_code == 200
        held[0].settimeout(10)
        assert held[0].recv(10) == b""  # the oldest idle connection was the one dropped
        assert env.step_result("up").observation.step == 1  # an active WebSocket is never a victim
        env.close()
    finally:
        for s in held:
            s.close()
        srv.close()


def test_slow_body_gets_a_timeout_error():
    srv = ServerProcess([SOKOBAN], extra_args=["--body-timeout", "1"])
    try:
        s = socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])))
        s.sendall(b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        s.settimeout(10)
        data = b""
        while b"timeout" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert b"408" in data.split(b"\r\n", 1)[0] and b'"timeout"' in data
        s.close()
    finally:
        srv.close()


def test_health_answers_with_1500_idle_connections_held(server):
    port = int(server.url.rsplit(":", 1)[1])
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1700:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        except (ValueError, OSError):
            pytest.skip(f"this process may open only {soft} files")
    held = []
    try:
        for k in range(1500):
            s = socket.create_connection(("127.0.0.1", port))
            if k % 2:
                s.sendall(b"GET /health HTTP/1.1\r\nHo")  # half a request head
            held.append(s)
        with httpx.Client(timeout=5) as c:
            for _ in range(5):
                assert c.get(server.url + "/health").status_code == 200
        env = RemoteEnv(SOKOBAN, url=server.url)
        env.reset_result(seed=1)
        assert env.step_result("up").observation.step == 1
        env.close()
    finally:
        for s in held:
            s.close()


# ------------------------------------------------------------------------------ pools and recovery


def test_one_env_needing_a_reset_does_not_fail_the_batch():
    for backend, kw in (("inprocess", {}), ("subprocess", {"num_workers": 2})):
        with make_pool(SOKOBAN, 3, backend=backend, env_kwargs={"max_steps": 1}, **kw) as pool:
            pool.reset([1, 2, 3])
            first = pool.step(["up", None, None])  # env 0 is done (max_steps 1)
            assert first[0].truncated
            with pytest.raises(PoolStepError) as e:
                pool.step(["up", "up", "left"])
            assert set(e.value.errors) == {0} and isinstance(e.value.errors[0], ResetNeededError)
            assert e.value.results[1].observation.step == 1 and e.value.results[2].observation.step == 1
            pool.reset([1, 2, 3])
            got = pool.step(["up", "up", "up"], on_error="return")
            assert all(r.observation.step == 1 for r in got)
            got = pool.step(["up", None, "up"], on_error="return")
            assert isinstance(got[0], ResetNeededError) and got[1] is None and isinstance(got[2], ResetNeededError)


def test_a_bad_seed_resets_no_env_of_the_batch():
    for backend, kw in (("inprocess", {}), ("subprocess", {"num_workers": 1})):
        with make_pool(SOKOBAN, 3, backend=backend, **kw) as pool:
            first = pool.reset([1, 2, 3])
            pool.step(["up", "up", "up"])
            for bad in ("4", True, 1.5, -2):
                with pytest.raises(ValueError):
                    pool.reset([4, bad, 6])
            got = pool.step(["left", "left", "left"])  # still the first episodes: step 2 each
            assert [r.observation.step for r in got] == [2, 2, 2] and first[0][0].task == got[0].observation.task


def test_pool_recovers_after_the_reaper_freed_its_sessions():
    with make_pool(SOKOBAN, 2, backend="subprocess", num_workers=1, server_args=["--idle-timeout", "3"]) as pool:
        pool.reset([4, 5])
        pool.step(["up", "up"])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until the reaper has freed both sessions
            if httpx.get(pool.workers[0].url + "/metrics").json()["sessions_reaped_total"] >= 2:
                break
            time.sleep(0.2)
        got = pool.step(["left", "left"])
        for r in got:
            assert r.truncated and "reaper" in r.info.extra["truncated_reason"]
        first = pool.reset([4, 5])  # usable again, identical to a fresh env
        ref = arlarena_envs.make(SOKOBAN).unwrapped
        assert first[0] == ref.reset_result(seed=4)
        assert pool.step(["down", None])[0] == ref.step_result("down")
    # the same after a reap between episodes: reset recovers
    with make_pool(SOKOBAN, 1, backend="subprocess", num_workers=1, server_args=["--idle-timeout", "3"]) as pool:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and httpx.get(pool.workers[0].url + "/metrics").json()["sessions_reaped_total"] < 1:
            time.sleep(0.2)
        assert pool.reset([4])[0] == arlarena_envs.make(SOKOBAN).unwrapped.reset_result(seed=4)
        assert pool.oracle_actions()[0] is not None and pool.prompts()[0]


def test_a_paused_worker_is_resumed_not_truncated():
    """SIGSTOP a worker while a batch is in flight: the client times out, but the worker lives;
    once it runs again the pool settles the batch by request id (each step applied once) and
    nothing is truncated or restarted."""
    import os
    import signal
    import threading

    with make_pool(SOKOBAN, 2, backend="subprocess", num_workers=1, client_kwargs={"timeout": 1.0, "retries": 0}) as pool, make_pool(SOKOBAN, 2) as ref:
        assert pool.reset([3, 4]) == ref.reset([3, 4])
        os.kill(pool.workers[0].pid, signal.SIGSTOP)
        threading.Timer(2.5, os.kill, (pool.workers[0].pid, signal.SIGCONT)).start()
        got = pool.step(["up", "left"])
        assert got == ref.step(["up", "left"]) and pool.restarts == 0
        assert pool.step(["down", "down"]) == ref.step(["down", "down"])  # stepped once, not twice


def test_resume_after_server_loss_reports_whether_the_step_was_applied():
    srv = ServerProcess([SOKOBAN])
    try:
        env = RemoteEnv(SOKOBAN, url=srv.url, retries=0)
        ref = arlarena_envs.make(SOKOBAN).unwrapped
        env.reset_result(seed=6)
        ref.reset_result(seed=6)
        want = ref.step_result("up")
        # applied, then the reply was lost: the server has it, the client does not know
        rid = env.channel.next_request_id()
        env.channel.send("step", {"session_id": env.session_id, "action": "up", "request_id": rid})
        lost = ServerLostError("reply lost", op="step", request_id=rid, payload={"session_id": env.session_id, "action": "up", "request_id": rid})
        applied, result = env.resume(lost)
        assert applied is True and result == want
        # never arrived: resuming applies it now, once
        rid = env.channel.next_request_id()
        lost = ServerLostError("request lost", op="step", request_id=rid, payload={"session_id": env.session_id, "action": "left", "request_id": rid})
        applied, result = env.resume(lost)
        assert applied is False and result == ref.step_result("left")
        # a server that came back without the session: the request can never be applied
        srv.kill()
        with pytest.raises(ServerLostError) as e:
            env.step_result("down")
        assert e.value.op == "step" and e.value.request_id
        srv.restart()
        env.channel.url = srv.url
        env.channel._transport.url = srv.url.replace("http://", "ws://") + "/ws"
        with pytest.raises(ServerLostError):
            env.resume(e.value, timeout_s=10)
        env.close()
    finally:
        srv.close()


def test_unexpected_errors_are_typed_and_the_server_keeps_serving(monkeypatch):
    mgr = _mgr()
    sid = _session(mgr)
    _call(mgr, op="reset", session_id=sid, seed=1)

    def boom(*a, **k):
        raise RecursionError("deep")

    monkeypatch.setattr(mgr, "dispatch", boom)
    status, body = _call(mgr, op="step", session_id=sid, action="up")
    assert status == 413 and body["error"]["code"] == "request_too_large"
    monkeypatch.setattr(mgr, "dispatch", lambda *a, **k: 1 / 0)
    status, body = _call(mgr, op="step", session_id=sid, action="up")
    assert status == 500 and body["error"]["code"] == "internal"
    monkeypatch.undo()
    assert _call(mgr, op="step", session_id=sid, action="up")[0] == 200


def test_remote_env_error_codes_are_typed(server):
    env = RemoteEnv(SOKOBAN, url=server.url)
    try:
        with pytest.raises(ValueError):
            env.reset_result(seed=1, options={"task_index": True})
        with pytest.raises(RemoteEnvError) as e:
            env.step_result("x" * 5000)
        assert e.value.code == "action_too_large"
    finally:
        env.close()
