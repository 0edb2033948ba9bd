"""Property tests of the wire messages (Hypothesis): arbitrary unicode (lone surrogates
included), sizes and nesting never crash the server's request handling, every reply is a typed
JSON reply, and a refused request leaves the session exactly as it was (never half-applied)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from arlarena_envs.server.app import ServerConfig, SessionManager  # noqa: E402
from arlarena_envs.server.messages import HTTP_STATUS, ErrorCode  # noqa: E402

SOKOBAN = "arlarena/Sokoban-v0"
CODES = {c.value for c in ErrorCode}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# any unicode, lone surrogates included (what json.loads makes of "\ud800")
TEXT = st.text(st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=64)
SCALARS = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False) | TEXT
JSON = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(TEXT, kids, max_size=4), max_leaves=30)
OPS = st.sampled_from(["create", "reset", "step", "close", "oracle", "prompt", "batch", "fly", "", None, 3])


@pytest.fixture(scope="module")
def mgr():
    m = SessionManager(ServerConfig(env_ids=[SOKOBAN], max_action_bytes=2048, max_sessions=100_000))
    return m


@pytest.fixture(scope="module")
def sid(mgr):
    status, body = mgr.handle_obj({"op": "create", "env_id": SOKOBAN})
    sid = json.loads(body)["result"]["session_id"]
    mgr.handle_obj({"op": "reset", "session_id": sid, "seed": 1})
    return sid


def _typed(status: int, body: str) -> dict:
    reply = json.loads(body)
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
    if reply["ok"]:
        assert status == 200 and "result" in reply
    else:
        err = reply["error"]
        assert err["code"] in CODES and err["status"] == status == HTTP_STATUS[ErrorCode(err["code"])] and err["message"]
    return reply


def _state(mgr, sid):
    env = mgr.sessions[sid].env
    return (env.observation.state_hash if env.observation else None, env._steps, len(env._history), env._ready)


@SETTINGS
@given(raw=st.binary(max_size=256) | TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_get_a_typed_reply(mgr, raw):
    _typed(*mgr.handle_text(raw))


@SETTINGS
@given(depth=st.integers(0, 3000), opener=st.sampled_from(["[", '{"a":', '{"op":"step","action":']))
def test_any_nesting_gets_a_typed_reply(mgr, depth, opener):
    closer = {"[": "]", '{"a":': "}", '{"op":"step","action":': "}"}[opener]
    _typed(*mgr.handle_text(opener * depth + "1" + closer * depth))


@SETTINGS
@given(op=OPS, fields=st.dictionaries(st.sampled_from(["seed", "options", "action", "env_id", "env_kwargs", "request_id", "client_id", "requests", "extra"]), JSON, max_size=5))
def test_arbitrary_requests_never_half_apply(mgr, sid, op, fields):
    req = {**fields, "session_id": sid}
    if op is not None:
        req["op"] = op
    before = _state(mgr, sid)
    status, body = mgr.handle_obj(req)
    reply = _typed(status, body)
    # the same through the text path (what a WebSocket frame takes)
    try:
        text = json.dumps(req)
    except (TypeError, ValueError):
        text = None
    if not reply["ok"]:
        assert _state(mgr, sid) == before  # a refused request changed nothing
    if text is not None:
        _typed(*mgr.handle_text(text))
    if sid not in mgr.sessions or mgr.sessions[sid].env._ready is False:  # closed or finished: start again
        mgr.sessions.pop(sid, None)
        status, body = mgr.handle_obj({"op": "create", "env_id": SOKOBAN})
        new = json.loads(body)["result"]["session_id"]
        mgr.sessions[sid] = mgr.sessions.pop(new)
        mgr.sessions[sid].session_id = sid
        mgr.handle_obj({"op": "reset", "session_id": sid, "seed": 1})


@SETTINGS
@given(action=TEXT | st.text(max_size=4000), parsed=st.booleans(), think=st.none() | TEXT)
def test_any_action_text_steps_once_or_is_refused(mgr, sid, action, parsed, think):
    if mgr.sessions[sid].env._ready is False:
        mgr.handle_obj({"op": "reset", "session_id": sid, "seed": 1})
    wire = {"action": action, "status": "ok", "format_valid": True, "think": think} if parsed else action
    before = _state(mgr, sid)
    reply = _typed(*mgr.handle_obj({"op": "step", "session_id": sid, "action": wire}))
    after = _state(mgr, sid)
    if reply["ok"]:
        assert after[1] == before[1] + 1 and reply["result"]["observation"]["step"] == after[1]
    else:
        assert after == before
