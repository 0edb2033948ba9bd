"""`serve --ws-impl fast` (server/fast_ws.py, the default) answers `/ws` frames without an ASGI
round trip: it must give the same replies as the ASGI endpoint (`--ws-impl websockets-sansio`),
keep a connection's replies in request order when frames are pipelined (steps answered at once
behind creates/resets answered in threads), close idle connections, and leave other WebSocket
routes to the app."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websockets")

import arlarena_envs  # noqa: E402,F401  (registers the ids)
from arlarena_envs.pools.subprocess import ServerProcess  # noqa: E402

SOKOBAN = "arlarena/Sokoban-v0"
FRAMES = [
    ("{bad json", None),
    ('{"op": "fly"}', None),
    ('{"op": "step", "session_id": "missing", "action": "up"}', None),
    (b"\xff\xfe not utf8", None),
]
ACTIONS = ["up", "left", "<think>push</think><action>down</action>", "bogus", "right", "", "RIGHT "]


def _ws(url: str, **kw):
    from websockets.sync.client import connect

    return connect(url.replace("http://", "ws://") + "/ws", max_size=None, **kw)


def _session_script(ws) -> list[dict]:
    """One client's frames, one at a time; the replies with the session id blanked."""
    out = []
    for frame, _ in FRAMES:
        ws.send(frame)
        out.append(json.loads(ws.recv(timeout=30)))
    ws.send(json.dumps({"op": "create", "env_id": SOKOBAN, "request_id": "c1"}))
    created = json.loads(ws.recv(timeout=30))
    sid = created["result"]["session_id"]
    out.append(created)
    msgs = [{"op": "reset", "session_id": sid, "seed": 5, "request_id": "r0"}]
    msgs += [{"op": "step", "session_id": sid, "action": a, "request_id": f"s{i}"} for i, a in enumerate(ACTIONS)]
    msgs += [{"op": "step", "session_id": sid, "action": "up", "request_id": "s0"},  # a replay
             {"op": "step", "session_id": sid, "action": "down", "request_id": "s0"},  # a conflict
             {"op": "prompt", "session_id": sid}, {"op": "oracle", "session_id": sid},
             {"op": "batch", "requests": [{"op": "step", "session_id": sid, "action": "up"}, {"op": "prompt", "session_id": sid}]},
             {"op": "close", "session_id": sid, "request_id": "x"}, {"op": "step", "session_id": sid, "action": "up"}]
    for m in msgs:
        ws.send(json.dumps(m))
        out.append(json.loads(ws.recv(timeout=30)))
    text = json.dumps(out).replace(sid, "S")  # the one thing that differs between two servers
    return json.loads(text)


@pytest.fixture(scope="module")
def servers():
    fast = ServerProcess([SOKOBAN], extra_args=["--ws-impl", "fast", "--ws-idle-timeout", "2"])
    try:
        asgi = ServerProcess([SOKOBAN], extra_args=["--ws-impl", "websockets-sansio"])
        try:
            yield fast, asgi
        finally:
            asgi.close()
    finally:
        fast.close()


def test_fast_path_gives_the_asgi_endpoints_replies(servers):
    fast, asgi = servers
    with _ws(fast.url) as a, _ws(asgi.url) as b:
        got, want = _session_script(a), _session_script(b)
    assert got == want
    assert [r["ok"] for r in got].count(False) >= 6  # the script does reach the error replies


def test_pipelined_frames_are_answered_in_order(servers):
    fast, _ = servers
    with _ws(fast.url) as ws:
        ws.send(json.dumps({"op": "create", "env_id": SOKOBAN, "request_id": "c"}))
        sid = json.loads(ws.recv(timeout=30))["result"]["session_id"]
        # a reset (answered in a thread) followed at once by steps (answerable on the loop):
        # the steps must wait behind it, and every reply comes back in the order sent
        frames = [{"op": "reset", "session_id": sid, "seed": 1, "request_id": "r"}]
        frames += [{"op": "step", "session_id": sid, "action": "up", "request_id": f"s{i}"} for i in range(30)]
        frames += [{"op": "reset", "session_id": sid, "seed": 2, "request_id": "r2"}]
        frames += [{"op": "step", "session_id": sid, "action": "left", "request_id": f"t{i}"} for i in range(30)]
        for f in frames:
            ws.send(json.dumps(f))
        replies = [json.loads(ws.recv(timeout=30)) for _ in frames]
    assert [r["request_id"] for r in replies] == [f["request_id"] for f in frames]
    steps = [r["result"]["info"]["step"] for r in replies[1:31] if r["ok"]]
    assert steps == sorted(steps) and steps[0] == 1  # stepped after the reset, in order


def test_idle_connection_is_closed(servers):
    from websockets.exceptions import ConnectionClosed

    fast, _ = servers
    with _ws(fast.url) as ws:
        ws.send('{"op": "fly"}')
        ws.recv(timeout=10)
        time.sleep(4.5)  # --ws-idle-timeout 2 (checked at least once a second after it passes)
        with pytest.raises(ConnectionClosed) as e:
            ws.send('{"op": "fly"}')
            ws.recv(timeout=10)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1001


def test_token_is_checked_on_the_fast_path():
    srv = ServerProcess([SOKOBAN], token="tok-123", extra_args=["--ws-impl", "fast"])
    try:
        from websockets.exceptions import ConnectionClosed

        with _ws(srv.url) as ws:
            ws.send(json.dumps({"op": "create", "env_id": SOKOBAN, "request_id": "a"}))
            reply = json.loads(ws.recv(timeout=10))
            assert reply["error"]["code"] == "unauthorized" and reply["request_id"] == "a"
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
        with _ws(srv.url, additional_headers={"Authorization": "Bearer tok-123"}) as ws:
            ws.send(json.dumps({"op": "create", "env_id": SOKOBAN}))
            assert json.loads(ws.recv(timeout=30))["ok"] is True
    finally:
        srv.close()


def test_both_event_loops_give_the_same_replies(servers):
    """`--loop auto` picks uvloop when installed (the 'server' extra); the plain asyncio loop
    must serve the same protocol."""
    pytest.importorskip("uvloop")
    fast, _ = servers
    with _ws(fast.url) as ws:
        want = _session_script(ws)
    for loop in ("asyncio", "uvloop"):
        srv = ServerProcess([SOKOBAN], extra_args=["--ws-impl", "fast", "--loop", loop])
        try:
            with _ws(srv.url) as ws:
                assert _session_script(ws) == want, loop
        finally:
            srv.close()
