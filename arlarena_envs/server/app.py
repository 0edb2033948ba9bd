"""The env server: one env instance per session, over WebSocket (`/ws`) with an HTTP fallback.

    app = create_app(ServerConfig(env_ids=["arlarena/Sokoban-v0"]))

Routes (JSON only; bodies and replies are the models of `server.messages`):

    WS   /ws                          one request frame -> one reply frame (any op)
    POST /sessions                    create   {env_id, env_kwargs?, request_id?}
    POST /sessions/{sid}/reset        reset    {seed?, options?, request_id?}
    POST /sessions/{sid}/step         step     {action, request_id?}
    POST /sessions/{sid}/close        close    (DELETE /sessions/{sid} too)
    GET  /sessions/{sid}/oracle       the env's expert action for the current state
    GET  /sessions/{sid}/prompt       the paper-style prompt of the current turn
    GET  /health                      liveness (no token needed: container health checks)
    GET  /schema                      served specs, wire-message JSON schemas, error codes
    GET  /metrics                     counters and step latency percentiles
    *    /openenv/<Name-vN>/...       OpenEnv's protocol (ws, schema, reset, ...): server/openenv.py

Sessions are leases: a session with no request for `idle_timeout_s` is freed by the reaper
(on by default). Mutating requests with a `request_id` are idempotent: a retried id gets the
stored reply and never steps the env twice. Every bad request gets a typed error reply
(`messages.ErrorCode`) and the server keeps serving.
"""

# no `from __future__ import annotations`: FastAPI resolves the route annotations at runtime

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from arlarena_envs.errors import ArlArenaError, ConfigError, ResetNeededError
from arlarena_envs.registry import _normalize_id, create_env, get_spec
from arlarena_envs.server.messages import (
    HTTP_STATUS,
    MUTATING_OPS,
    REQUEST_ADAPTER,
    WIRE_MODELS,
    Closed,
    CloseRequest,
    CreateRequest,
    ErrorCode,
    Health,
    Metrics,
    OracleResult,
    PromptResult,
    ResetResult,
    SessionCreated,
    StepRequest,
)

log = logging.getLogger("arlarena.server")

REPLAY_CACHE = 16  # replies kept per session for request-id replay (clients retry the last one)
CLOSED_MEMORY = 65_536  # ids of closed/reaped sessions remembered, to say *why* one is unknown
FORBIDDEN_KWARGS = frozenset({"backend", "url", "token", "render_mode"})


@dataclass
class ServerConfig:
    env_ids: list[str]
    max_sessions: int = 1024
    idle_timeout_s: float | None = 600.0  # None or 0: the reaper is off
    reap_interval_s: float | None = None  # default: min(idle_timeout/4, 5 s)
    max_action_bytes: int = 256 * 1024
    token: str | None = None
    offload: bool = False  # run env calls in a thread pool (slow envs) instead of the event loop

    def __post_init__(self) -> None:
        if not self.env_ids:
            raise ConfigError("serve at least one env id (e.g. arlarena/Sokoban-v0)")
        if self.max_sessions < 1:
            raise ConfigError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.max_action_bytes < 1:
            raise ConfigError(f"max_action_bytes must be >= 1, got {self.max_action_bytes}")
        if self.idle_timeout_s is not None and self.idle_timeout_s <= 0:
            self.idle_timeout_s = None


class ServerError(ArlArenaError):
    """A request failed; carries the wire error code (the reply says the same)."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Session:
    session_id: str
    env_id: str
    env: Any
    last_used: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    replies: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    busy: bool = False


def _err_json(code: ErrorCode, message: str, request_id: str | None) -> str:
    return json.dumps(
        {"ok": False, "request_id": request_id, "error": {"code": code.value, "message": message, "status": HTTP_STATUS[code]}}
    )


def _ok_json(request_id: str | None, result_json: str) -> str:
    # the same bytes as Reply(ok=True, request_id=..., result=...).model_dump_json(), without
    # re-validating the result model on the hot path
    return '{"ok":true,"request_id":' + json.dumps(request_id) + ',"result":' + result_json + "}"


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc or 'request'}: {err.get('msg')}")
    return "invalid request: " + "; ".join(parts)


class SessionManager:
    """Sessions, leases, replay caches and counters. Thread-safe (the offload mode uses threads)."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.specs = {}
        for env_id in config.env_ids:
            spec = get_spec(env_id)
            self.specs[spec.id] = spec
        self.sessions: dict[str, Session] = {}
        self.closed: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.create_replies: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.requests_total: collections.Counter[str] = collections.Counter()
        self.errors_total: collections.Counter[str] = collections.Counter()
        self.created_total = self.closed_total = self.reaped_total = 0
        self.step_latency: collections.deque[float] = collections.deque(maxlen=20_000)

    # ----------------------------------------------------------------- entry points

    def handle_text(self, raw: str | bytes) -> tuple[int, str]:
        """One raw request (a WS frame or an HTTP body with its op) -> (HTTP status, reply JSON)."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            return self._fail(ErrorCode.MALFORMED, f"request is not valid JSON ({e}); send one JSON object per frame", None)
        return self.handle_obj(data)

    def handle_obj(self, data: Any) -> tuple[int, str]:
        if not isinstance(data, dict):
            return self._fail(ErrorCode.MALFORMED, "a request must be a JSON object with an 'op' field", None)
        rid = data.get("request_id")
        rid = rid if isinstance(rid, str) else None
        action = data.get("action")
        # size check before validation: never validate (or store) a huge payload
        if isinstance(action, str) and len(action) * 4 > self.config.max_action_bytes:
            size = len(action.encode("utf-8", errors="surrogatepass"))
            if size > self.config.max_action_bytes:
                return self._fail(
                    ErrorCode.ACTION_TOO_LARGE,
                    f"action is {size} bytes; this server accepts at most {self.config.max_action_bytes} "
                    "(serve with --max-action-bytes to raise it, or cut the response)",
                    rid,
                )
        try:
            req = REQUEST_ADAPTER.validate_python(data)
        except ValidationError as e:
            return self._fail(ErrorCode.INVALID_REQUEST, _validation_message(e), rid)
        try:
            return 200, self.dispatch(req)
        except ServerError as e:
            return self._fail(e.code, str(e), rid)

    def dispatch(self, req: Any) -> str:
        op = req.op
        self.requests_total[op] += 1
        if op == "create":
            return self._create(req)
        if op == "batch":
            bodies = []
            for item in req.requests:
                if isinstance(item, dict) and item.get("op") == "batch":
                    bodies.append(self._fail(ErrorCode.INVALID_REQUEST, "a batch cannot contain a batch", item.get("request_id"))[1])
                else:
                    bodies.append(self.handle_obj(item)[1])
            return _ok_json(req.request_id, '{"replies":[' + ",".join(bodies) + "]}")
        sess = self._get(req.session_id)
        rid = req.request_id
        with sess.lock:
            if rid is not None and rid in sess.replies:
                return sess.replies[rid]  # a retried request: the same reply, no second step
            if sess.session_id not in self.sessions:  # closed while we waited for the lock
                raise ServerError(ErrorCode.SESSION_CLOSED, f"session {sess.session_id} was closed")
            sess.busy = True
            t0 = time.perf_counter()
            try:
                reply = _ok_json(rid, self._run(sess, req))
            finally:
                sess.busy = False
                sess.last_used = time.monotonic()
            if op == "step":
                self.step_latency.append(time.perf_counter() - t0)
            if rid is not None and op in MUTATING_OPS:
                sess.replies[rid] = reply
                if len(sess.replies) > REPLAY_CACHE:
                    sess.replies.popitem(last=False)
            return reply

    # ----------------------------------------------------------------- ops

    def _create(self, req: CreateRequest) -> str:
        rid = req.request_id
        with self._lock:
            if rid is not None and rid in self.create_replies:
                return self.create_replies[rid]
        env_id = _normalize_id(req.env_id)
        spec = self.specs.get(env_id)
        if spec is None:
            raise ServerError(ErrorCode.UNKNOWN_ENV, f"env {req.env_id!r} is not served here; served: {sorted(self.specs)}")
        bad = FORBIDDEN_KWARGS & set(req.env_kwargs)
        if bad:
            raise ServerError(ErrorCode.INVALID_REQUEST, f"env_kwargs may not set {sorted(bad)} (client-side options)")
        with self._lock:
            if len(self.sessions) >= self.config.max_sessions:
                raise ServerError(
                    ErrorCode.CAPACITY,
                    f"server holds {len(self.sessions)}/{self.config.max_sessions} sessions: close sessions you no "
                    "longer need, wait for idle ones to be reaped, or start the server with a larger --max-sessions "
                    "(or more servers)",
                )
            sid = secrets.token_hex(12)
            self.sessions[sid] = Session(sid, spec.id, None, time.monotonic())  # reserve the slot
        try:
            env = create_env(env_id=spec.id, backend="inprocess", **req.env_kwargs)
        except (ArlArenaError, TypeError, ValueError) as e:
            with self._lock:
                self.sessions.pop(sid, None)
            raise ServerError(ErrorCode.ENV_ERROR, f"cannot create {spec.id} with {req.env_kwargs}: {e}") from e
        except BaseException:
            with self._lock:
                self.sessions.pop(sid, None)
            raise
        sess = self.sessions[sid]
        sess.env = env
        sess.last_used = time.monotonic()
        result = SessionCreated(
            session_id=sid,
            env_id=spec.id,
            lease_s=self.config.idle_timeout_s,
            spec=spec,
            protocol=env.protocol.model_dump(mode="json"),
            split=env.split,
        )
        reply = _ok_json(rid, result.model_dump_json())
        with self._lock:
            self.created_total += 1
            if rid is not None:
                self.create_replies[rid] = reply
                if len(self.create_replies) > 4096:
                    self.create_replies.popitem(last=False)
        return reply

    def _run(self, sess: Session, req: Any) -> str:
        env = sess.env
        op = req.op
        try:
            if op == "step":
                assert isinstance(req, StepRequest)
                return env.step_result(req.action).model_dump_json()
            if op == "reset":
                obs, info = env.reset_result(seed=req.seed, options=req.options)
                return ResetResult(observation=obs, info=info).model_dump_json()
            if op == "close":
                assert isinstance(req, CloseRequest)
                self._drop(sess.session_id, "closed by its client")
                return Closed(session_id=sess.session_id).model_dump_json()
            if env.observation is None:
                raise ResetNeededError(f"call reset before {op}")
            if op == "oracle":
                return OracleResult(action=env.oracle_action()).model_dump_json()
            if op == "prompt":
                return PromptResult(prompt=env.prompt()).model_dump_json()
        except ResetNeededError as e:
            raise ServerError(ErrorCode.RESET_NEEDED, str(e)) from e
        except (ArlArenaError, ValueError, TypeError) as e:
            raise ServerError(ErrorCode.ENV_ERROR, f"{type(e).__name__}: {e}") from e
        except Exception as e:  # an env bug must not take the server (and every other session) down
            log.exception("env %s failed on %s", sess.env_id, op)
            raise ServerError(ErrorCode.INTERNAL, f"the env raised {type(e).__name__}: {e}") from e
        raise ServerError(ErrorCode.INVALID_REQUEST, f"unknown op {op!r}")

    # ----------------------------------------------------------------- sessions

    def _get(self, sid: str) -> Session:
        sess = self.sessions.get(sid)
        if sess is not None and sess.env is not None:
            return sess
        why = self.closed.get(sid)
        if why == "closed by its client":
            raise ServerError(ErrorCode.SESSION_CLOSED, f"session {sid} was closed; create a new session")
        if why is not None:
            raise ServerError(ErrorCode.UNKNOWN_SESSION, f"session {sid} no longer exists ({why}); create a new session")
        raise ServerError(ErrorCode.UNKNOWN_SESSION, f"no session {sid!r} on this server (was it restarted?); create a session first")

    def _drop(self, sid: str, why: str) -> None:
        with self._lock:
            sess = self.sessions.pop(sid, None)
            if sess is None:
                return
            self.closed[sid] = why
            if len(self.closed) > CLOSED_MEMORY:
                self.closed.popitem(last=False)
            if why.startswith("reaped"):
                self.reaped_total += 1
            else:
                self.closed_total += 1
        if sess.env is not None:
            with contextlib.suppress(Exception):  # closing a broken env must not fail the request
                sess.env.close()

    def reap(self, now: float | None = None) -> int:
        """Free sessions idle for longer than their lease; returns how many were freed."""
        ttl = self.config.idle_timeout_s
        if ttl is None:
            return 0
        now = time.monotonic() if now is None else now
        with self._lock:
            stale = [s.session_id for s in self.sessions.values() if s.env is not None and not s.busy and now - s.last_used > ttl]
        for sid in stale:
            self._drop(sid, f"reaped by the idle reaper after {ttl:g} s without requests")
        if stale:
            log.info("reaped %d idle sessions", len(stale))
        return len(stale)

    def close_all(self) -> None:
        for sid in list(self.sessions):
            self._drop(sid, "server shut down")

    # ----------------------------------------------------------------- reporting

    def _fail(self, code: ErrorCode, message: str, rid: str | None) -> tuple[int, str]:
        self.errors_total[code.value] += 1
        return HTTP_STATUS[code], _err_json(code, message, rid)

    def health(self) -> Health:
        from arlarena_envs import __version__

        return Health(
            version=__version__,
            env_ids=sorted(self.specs),
            sessions=len(self.sessions),
            max_sessions=self.config.max_sessions,
            uptime_s=time.monotonic() - self.started,
        )

    def metrics(self) -> Metrics:
        lat = sorted(self.step_latency)

        def pct(q: float) -> float | None:
            return None if not lat else 1e3 * lat[min(len(lat) - 1, int(q * len(lat)))]

        return Metrics(
            sessions_active=len(self.sessions),
            sessions_created_total=self.created_total,
            sessions_closed_total=self.closed_total,
            sessions_reaped_total=self.reaped_total,
            requests_total=dict(self.requests_total),
            errors_total=dict(self.errors_total),
            step_latency_ms_p50=pct(0.5),
            step_latency_ms_p99=pct(0.99),
            uptime_s=time.monotonic() - self.started,
        )

    def schema(self) -> dict[str, Any]:
        return {
            "env_ids": sorted(self.specs),
            "specs": {k: v.model_dump(mode="json") for k, v in self.specs.items()},
            "messages": {name: m.model_json_schema() for name, m in WIRE_MODELS.items()},
            "error_codes": {c.value: HTTP_STATUS[c] for c in ErrorCode},
            "limits": {
                "max_sessions": self.config.max_sessions,
                "max_action_bytes": self.config.max_action_bytes,
                "idle_timeout_s": self.config.idle_timeout_s,
            },
        }


def check_token(config: ServerConfig, header: str | None) -> bool:
    """Bearer-token check (constant time). No configured token: everything is allowed."""
    if config.token is None:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].encode(), config.token.encode())


def create_app(config: ServerConfig):  # -> fastapi.FastAPI (imported lazily: the server extra)
    """The ASGI app. `app.state.manager` is the SessionManager (tests poke the reaper through it)."""
    try:
        from fastapi import FastAPI, Request, WebSocket
        from fastapi.responses import JSONResponse, Response
        from starlette.websockets import WebSocketDisconnect
    except ImportError as e:  # pragma: no cover - depends on the install
        from arlarena_envs.errors import MissingDependencyError

        raise MissingDependencyError(f"the env server needs the server extra: pip install 'arlarena-envs[server]' ({e})") from e

    manager = SessionManager(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        task = None
        if config.idle_timeout_s is not None:
            interval = config.reap_interval_s or min(config.idle_timeout_s / 4, 5.0)

            async def reaper() -> None:
                while True:
                    await asyncio.sleep(interval)
                    manager.reap()

            task = asyncio.create_task(reaper())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            manager.close_all()

    app = FastAPI(title="ARLArena env server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.manager = manager

    async def run(fn: Any, *args: Any) -> tuple[int, str]:
        if config.offload:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)  # cheap envs: no thread hop on the hot path

    def reply(status_and_body: tuple[int, str]) -> Response:
        status, body = status_and_body
        return Response(content=body, status_code=status, media_type="application/json")

    def unauthorized() -> Response:
        return reply(manager._fail(ErrorCode.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer <token>'", None))

    async def body_obj(request: Request, op: str, sid: str | None) -> tuple[int, str] | dict:
        raw = await request.body()
        if not raw.strip():
            data: Any = {}
        else:
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as e:
                return manager._fail(ErrorCode.MALFORMED, f"request body is not valid JSON ({e})", None)
        if not isinstance(data, dict):
            return manager._fail(ErrorCode.MALFORMED, "the request body must be a JSON object", None)
        data = {**data, "op": op}
        if sid is not None:
            data["session_id"] = sid
        return data

    async def http_op(request: Request, op: str, sid: str | None = None) -> Response:
        if not check_token(config, request.headers.get("authorization")):
            return unauthorized()
        data = await body_obj(request, op, sid)
        if isinstance(data, tuple):
            return reply(data)
        return reply(await run(manager.handle_obj, data))

    @app.get("/health")
    async def health() -> Response:
        return Response(content=manager.health().model_dump_json(), media_type="application/json")

    @app.get("/schema")
    async def schema(request: Request) -> Response:
        if not check_token(config, request.headers.get("authorization")):
            return unauthorized()
        return JSONResponse(manager.schema())

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if not check_token(config, request.headers.get("authorization")):
            return unauthorized()
        return Response(content=manager.metrics().model_dump_json(), media_type="application/json")

    @app.post("/sessions")
    async def create(request: Request) -> Response:
        return await http_op(request, "create")

    @app.post("/sessions/{sid}/reset")
    async def reset(sid: str, request: Request) -> Response:
        return await http_op(request, "reset", sid)

    @app.post("/sessions/{sid}/step")
    async def step(sid: str, request: Request) -> Response:
        return await http_op(request, "step", sid)

    @app.post("/sessions/{sid}/close")
    async def close_post(sid: str, request: Request) -> Response:
        return await http_op(request, "close", sid)

    @app.delete("/sessions/{sid}")
    async def close_delete(sid: str, request: Request) -> Response:
        return await http_op(request, "close", sid)

    @app.get("/sessions/{sid}/oracle")
    async def oracle(sid: str, request: Request) -> Response:
        if not check_token(config, request.headers.get("authorization")):
            return unauthorized()
        return reply(await run(manager.handle_obj, {"op": "oracle", "session_id": sid}))

    @app.get("/sessions/{sid}/prompt")
    async def prompt(sid: str, request: Request) -> Response:
        if not check_token(config, request.headers.get("authorization")):
            return unauthorized()
        return reply(await run(manager.handle_obj, {"op": "prompt", "session_id": sid}))

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        if not check_token(config, websocket.headers.get("authorization")):
            # Answer the client's first request before closing: closing at once races with the
            # client's send, which then sees a dropped connection instead of this error.
            request_id = None
            first = await websocket.receive()
            if first.get("type") == "websocket.disconnect":
                return
            try:
                parsed = json.loads(first.get("text") or "")
                rid = parsed.get("request_id") if isinstance(parsed, dict) else None
                request_id = rid if isinstance(rid, str) else None
            except ValueError:
                pass
            _, body = manager._fail(ErrorCode.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer <token>'", request_id)
            await websocket.send_text(body)
            await websocket.close(code=1008)
            return
        receive, send = websocket.receive, websocket.send
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            raw = msg.get("text")
            if raw is None:
                raw = msg.get("bytes") or b""
            _, body = await run(manager.handle_text, raw)
            try:
                await send({"type": "websocket.send", "text": body})
            except (WebSocketDisconnect, RuntimeError, OSError):
                return  # the client went away; its session stays (it may reconnect and replay)

    from arlarena_envs.server.openenv import mount_openenv

    # OpenEnv's protocol under /openenv/<Name-vN> (server/openenv.py)
    mount_openenv(app, manager, lambda header: check_token(config, header))
    return app
