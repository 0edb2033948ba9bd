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
import hashlib
import hmac
import itertools
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from arlarena_envs.contract import Protocol
from arlarena_envs.errors import ArlArenaError, ConfigError, ResetNeededError
from arlarena_envs.registry import _normalize_id, create_env, get_spec
from arlarena_envs.server.messages import (
    HTTP_STATUS,
    MAX_JSON_DEPTH,
    MUTATING_OPS,
    REQUEST_ID_MAX,
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
    action_size,
    json_nesting_depth,
)

log = logging.getLogger("arlarena.server")

REPLAY_CACHE = 16  # replies kept per session for request-id replay (clients retry the last one)
CREATE_REPLAY_CACHE = 4096  # create replies kept (keyed by client id + request id)
CLOSED_MEMORY = 65_536  # ids of closed/reaped sessions remembered, to say *why* one is unknown
FORBIDDEN_KWARGS = frozenset({"backend", "url", "token", "render_mode"})
# ops that may take long (catalogue builds, game generation, expert planning): off the event
# loop in the default offload mode "auto"
SLOW_OPS = frozenset({"create", "reset", "oracle"})
SLOW_STEP_S = 0.002  # auto: an env whose typical (median) step takes longer than this steps in threads too
SLOW_SHARE_ALPHA = 0.05  # weight of the latest step in the moving share of slow steps
OFFLOAD_MODES = ("auto", "all", "none")


@dataclass
class ServerConfig:
    env_ids: list[str]
    max_sessions: int = 1024
    idle_timeout_s: float | None = 600.0  # None or 0: the reaper is off
    reap_interval_s: float | None = None  # default: min(idle_timeout/4, 5 s)
    max_action_bytes: int = 256 * 1024
    token: str | None = None
    # where env calls run: "auto" (create/reset/oracle in threads, steps on the event loop
    # while that env id's median step is under SLOW_STEP_S, in threads once it is not), "all" (every call in threads), "none" (every call on the loop: a slow call blocks
    # every connection, /health included). True/False are read as "all"/"none".
    offload: str | bool = "auto"
    max_request_bytes: int | None = None  # one frame/body at most (default: 4 x max_action_bytes + 16 MiB)
    allow_kwargs: frozenset[str] = frozenset()  # kwargs clients may set beyond the spec's client_kwargs (any value)
    max_env_variants: int = 4  # distinct cache-keyed kwarg combinations per env id (each keeps data in memory)
    header_timeout_s: float = 10.0  # a connection must deliver a request's headers within this
    body_timeout_s: float = 30.0  # ... and its body within this
    ws_idle_timeout_s: float | None = 900.0  # a WebSocket with no frame for this long is closed
    max_connections: int = 4096  # beyond: the oldest connection with no request in flight is dropped
    session_prefix: str = ""  # --workers: every session id starts with its worker's prefix (server.workers)

    def __post_init__(self) -> None:
        if not self.env_ids:
            raise ConfigError("serve at least one env id (e.g. arlarena/Sokoban-v0)")
        if self.max_sessions < 1:
            raise ConfigError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.max_action_bytes < 1:
            raise ConfigError(f"max_action_bytes must be >= 1, got {self.max_action_bytes}")
        if self.idle_timeout_s is not None and self.idle_timeout_s <= 0:
            self.idle_timeout_s = None
        if isinstance(self.offload, bool):
            self.offload = "all" if self.offload else "none"
        if self.offload not in OFFLOAD_MODES:
            raise ConfigError(f"offload must be one of {OFFLOAD_MODES}, got {self.offload!r}")
        if self.max_request_bytes is None:
            self.max_request_bytes = 4 * self.max_action_bytes + 16 * 2**20
        if self.max_request_bytes < self.max_action_bytes:
            raise ConfigError("max_request_bytes must be >= max_action_bytes (a request carries an action)")
        if self.max_env_variants < 1:
            raise ConfigError(f"max_env_variants must be >= 1, got {self.max_env_variants}")
        for name, v in (("header_timeout_s", self.header_timeout_s), ("body_timeout_s", self.body_timeout_s)):
            if not v > 0:
                raise ConfigError(f"{name} must be > 0, got {v}")
        if self.max_connections < 16:
            raise ConfigError(f"max_connections must be >= 16, got {self.max_connections}")
        if self.ws_idle_timeout_s is not None and self.ws_idle_timeout_s <= 0:
            self.ws_idle_timeout_s = None
        self.allow_kwargs = frozenset(self.allow_kwargs)
        bad = FORBIDDEN_KWARGS & self.allow_kwargs
        if bad:
            raise ConfigError(f"--allow-kwarg cannot allow {sorted(bad)}: those are client-side options, not env kwargs")


class ServerError(ArlArenaError):
    """A request failed; carries the wire error code (the reply says the same)."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


class _NeedsThread(Exception):
    """An inline (event-loop) call found its session busy in a thread: run it in a thread too."""


@dataclass
class Session:
    session_id: str
    env_id: str
    env: Any
    last_used: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    replies: collections.OrderedDict = field(default_factory=collections.OrderedDict)  # rid -> (fingerprint, reply)
    busy: bool = False


def slow_share(share: float | None, step_s: float) -> float:
    """The moving share of slow steps after one more step of `step_s` seconds:

        share' = (1 - a) * share + a * [step_s > SLOW_STEP_S]     (a = SLOW_SHARE_ALPHA; first: the indicator)

    A share above 1/2 means the median step is slow. A median, not a mean of the times: on a
    busy machine a fast step is now and then preempted for milliseconds, and a mean would then
    send a fast env's steps to threads (far dearer than the steps), which loads the machine
    more; the preempted steps are a small share, an env that blocks on every step is not."""
    hit = 1.0 if step_s > SLOW_STEP_S else 0.0
    return hit if share is None else (1 - SLOW_SHARE_ALPHA) * share + SLOW_SHARE_ALPHA * hit


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


def _fingerprint(req: Any) -> str:
    """What a request asks for, without its request id: a replay must ask for the same thing."""
    body = req.model_dump_json(exclude={"request_id"})
    return hashlib.blake2b(body.encode("utf-8", errors="surrogatepass"), digest_size=16).hexdigest()


def _replayed(stored: tuple[str, str], fp: str, rid: str) -> str:
    """The stored reply of a retried request, marked `"replayed":true` (the client learns that
    the request had already been applied)."""
    if stored[0] != fp:
        raise ServerError(
            ErrorCode.REQUEST_CONFLICT,
            f"request id {rid!r} was already used for a different request; use a fresh request id for every "
            "new request (retries reuse the id with the same body)",
        )
    reply = stored[1]
    return '{"ok":true,"replayed":true,' + reply[len('{"ok":true,') :] if reply.startswith('{"ok":true,') else reply


class SessionManager:
    """Sessions, leases, replay caches and counters. Thread-safe (the offload modes use threads)."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.specs = {}
        for env_id in config.env_ids:
            spec = get_spec(env_id)
            self.specs[spec.id] = spec
        self.sessions: dict[str, Session] = {}
        # sid -> (why it is gone, the close reply's (request id, fingerprint, reply) or None)
        self.closed: collections.OrderedDict[str, tuple[str, tuple[str, str, str] | None]] = collections.OrderedDict()
        self.create_replies: collections.OrderedDict[tuple[str, str], tuple[str, str]] = collections.OrderedDict()
        # env id -> the distinct cache-keyed kwarg combinations served so far (bounded: each keeps data)
        self.variants: dict[str, set[str]] = collections.defaultdict(set)
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.requests_total: collections.Counter[str] = collections.Counter()
        self.errors_total: collections.Counter[str] = collections.Counter()
        self.created_total = self.closed_total = self.reaped_total = 0
        self.step_latency: collections.deque[float] = collections.deque(maxlen=20_000)
        # env id -> moving share of its steps slower than SLOW_STEP_S (auto offload: an env whose
        # share passes 1/2, i.e. whose median step is slow, steps in threads)
        self.slow_share: dict[str, float] = {}

    # ----------------------------------------------------------------- entry points

    def parse_text(self, raw: str | bytes) -> dict | tuple[int, str]:
        """A raw frame -> the request object, or the typed error reply. Size and nesting are
        bounded before the JSON parser runs (a deep frame would exhaust the recursion limit)."""
        limit = self.config.max_request_bytes
        assert limit is not None
        if len(raw) > limit:
            return self._fail(ErrorCode.TOO_LARGE, f"request is {len(raw)} bytes; this server accepts at most {limit}", None)
        if isinstance(raw, (bytes, bytearray)):
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError as e:
                return self._fail(ErrorCode.MALFORMED, f"request is not UTF-8 ({e}); send one JSON object per frame", None)
        depth = json_nesting_depth(raw)
        if depth > MAX_JSON_DEPTH:
            return self._fail(
                ErrorCode.TOO_LARGE, f"request nests {depth} arrays/objects deep; at most {MAX_JSON_DEPTH} are accepted", None
            )
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as e:
            return self._fail(ErrorCode.MALFORMED, f"request is not valid JSON ({str(e)[:200]}); send one JSON object per frame", None)
        if not isinstance(data, dict):
            return self._fail(ErrorCode.MALFORMED, "a request must be a JSON object with an 'op' field", None)
        return data

    def handle_text(self, raw: str | bytes, scope: str | None = None) -> tuple[int, str]:
        """One raw request (a WS frame or an HTTP body with its op) -> (HTTP status, reply JSON)."""
        data = self.parse_text(raw)
        if isinstance(data, tuple):
            return data
        return self.handle_obj(data, scope)

    def needs_thread(self, data: Any) -> bool:
        """Whether this request should run off the event loop (see `ServerConfig.offload`)."""
        mode = self.config.offload
        if mode != "auto":
            return mode == "all"
        items = data.get("requests") if isinstance(data, dict) and data.get("op") == "batch" else [data]
        if not isinstance(items, list):
            return False
        for item in items:
            if not isinstance(item, dict):
                continue
            if item.get("op") in SLOW_OPS:
                return True
            sess = self.sessions.get(item.get("session_id")) if isinstance(item.get("session_id"), str) else None
            if sess is not None and sess.lock.locked():
                return True  # the session is busy in a thread: waiting for it must not block the loop
            if sess is not None and self.slow_share.get(sess.env_id, 0.0) > 0.5:
                return True  # this env's steps are slow (WebShop search, game engines)
        return False

    def handle_obj(self, data: Any, scope: str | None = None, *, inline: bool = False) -> tuple[int, str]:
        """One request object -> (HTTP status, reply JSON). Never raises: every failure is a typed
        reply (an unexpected one is `internal`, logged, and the server keeps serving).
        `inline`: called on the event loop; a busy session raises `_NeedsThread` instead of waiting."""
        if not isinstance(data, dict):
            return self._fail(ErrorCode.MALFORMED, "a request must be a JSON object with an 'op' field", None)
        rid = data.get("request_id")
        rid = rid if isinstance(rid, str) and len(rid) <= REQUEST_ID_MAX else None
        try:
            # size check before validation: never validate (or store) a huge payload; a
            # ParsedAction counts its text fields, so it cannot carry more than a string may
            size = action_size(data.get("action"))
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
            return 200, self.dispatch(req, scope, inline=inline)
        except ServerError as e:
            return self._fail(e.code, str(e), rid)
        except _NeedsThread:
            raise
        except RecursionError:
            return self._fail(ErrorCode.TOO_LARGE, f"request is nested too deeply (at most {MAX_JSON_DEPTH} levels)", rid)
        except Exception as e:  # a bug of ours must not take the connection (or the server) down
            log.exception("request failed")
            return self._fail(ErrorCode.INTERNAL, f"the server failed on this request ({type(e).__name__}); it keeps serving", rid)

    def dispatch(self, req: Any, scope: str | None = None, *, inline: bool = False) -> str:
        op = req.op
        self.requests_total[op] += 1
        if op == "create":
            return self._create(req, scope)
        if op == "batch":
            bodies = []
            for item in req.requests:
                if isinstance(item, dict) and item.get("op") == "batch":
                    bodies.append(self._fail(ErrorCode.INVALID_REQUEST, "a batch cannot contain a batch", item.get("request_id"))[1])
                else:
                    bodies.append(self.handle_obj(item, scope)[1])
            return _ok_json(req.request_id, '{"replies":[' + ",".join(bodies) + "]}")
        rid = req.request_id
        fp = _fingerprint(req) if rid is not None and op in MUTATING_OPS else ""
        if op == "close" and rid is not None:
            gone = self.closed.get(req.session_id)
            if gone is not None and gone[1] is not None and gone[1][0] == rid:
                return _replayed(gone[1][1:], fp, rid)  # a retried close: the stored reply
        sess = self._get(req.session_id)
        if inline:
            if not sess.lock.acquire(blocking=False):
                raise _NeedsThread
        else:
            sess.lock.acquire()
        try:
            if rid is not None and rid in sess.replies:
                return _replayed(sess.replies[rid], fp, rid)  # a retried request: the same reply, no second step
            if sess.session_id not in self.sessions:  # closed while we waited for the lock
                self._get(sess.session_id)
            sess.busy = True
            t0 = time.perf_counter()
            try:
                reply = _ok_json(rid, self._run(sess, req))
            finally:
                sess.busy = False
                sess.last_used = time.monotonic()
            if op == "step":
                dt = time.perf_counter() - t0
                self.step_latency.append(dt)
                self.slow_share[sess.env_id] = slow_share(self.slow_share.get(sess.env_id), dt)
            if rid is not None and op in MUTATING_OPS:
                sess.replies[rid] = (fp, reply)
                if len(sess.replies) > REPLAY_CACHE:
                    sess.replies.popitem(last=False)
                if op == "close":
                    with self._lock:
                        why, _ = self.closed.get(sess.session_id, ("closed by its client", None))
                        self.closed[sess.session_id] = (why, (rid, fp, reply))
            return reply
        finally:
            sess.lock.release()

    # ----------------------------------------------------------------- ops

    def client_kwargs(self, spec: Any, env_kwargs: dict[str, Any]) -> dict[str, Any]:
        """Check a client's env kwargs against the spec: split and protocol fields (strict types),
        the spec's `client_kwargs` (type, range, choices) and the operator's `allow_kwargs`.
        Anything else (paths, data switches, code loading) is refused with the list of what is allowed."""
        allowed = {"split", *Protocol.model_fields, *spec.client_kwargs, *self.config.allow_kwargs}
        for name, value in env_kwargs.items():
            if name in FORBIDDEN_KWARGS:
                raise ServerError(ErrorCode.INVALID_REQUEST, f"env_kwargs may not set {name!r} (a client-side option)")
            if name in self.config.allow_kwargs:
                continue
            if name not in allowed:
                raise ServerError(
                    ErrorCode.INVALID_REQUEST,
                    f"env_kwargs may not set {name!r} on {spec.id}: clients may set {sorted(allowed)} (the spec's "
                    "client_kwargs, split and protocol fields); paths and data switches are the operator's "
                    "(arlarena serve --allow-kwarg NAME lets clients set one)",
                )
            if name == "split":
                if not isinstance(value, str) or value not in spec.splits:
                    raise ServerError(ErrorCode.INVALID_REQUEST, f"env_kwargs.split must be one of {sorted(spec.splits)}, got {value!r}"[:300])
            elif name in spec.client_kwargs:
                why = spec.client_kwargs[name].problem(value)
                if why:
                    raise ServerError(ErrorCode.INVALID_REQUEST, f"env_kwargs.{name} {why}")
        overrides = {k: v for k, v in env_kwargs.items() if k in Protocol.model_fields and k not in self.config.allow_kwargs}
        if overrides:
            try:  # JSON mode, strict: "3" or 3.0 for an int field are refused, enum values by name
                Protocol.model_validate_json(json.dumps({**spec.protocol.model_dump(mode="json"), **overrides}), strict=True)
            except (ValidationError, ValueError, TypeError) as e:
                msg = _validation_message(e) if isinstance(e, ValidationError) else str(e)
                raise ServerError(ErrorCode.INVALID_REQUEST, "env_kwargs protocol overrides: " + msg) from None
        return env_kwargs

    def _claim_variant(self, spec: Any, env_kwargs: dict[str, Any]) -> None:
        """Bound the data kept per env id: each distinct combination of cache-keyed kwargs builds
        (and the env keeps, for the process's life) a catalogue or game set."""
        keys = sorted(k for k, ck in spec.client_kwargs.items() if ck.cache_key and k in env_kwargs)
        if not keys:
            return
        variant = json.dumps({k: env_kwargs[k] for k in keys}, sort_keys=True)
        default = json.dumps({k: spec.kwargs.get(k) for k in keys}, sort_keys=True)
        with self._lock:
            held = self.variants[spec.id]
            if variant == default or variant in held:
                return
            if len(held) + 1 >= self.config.max_env_variants:  # the spec's default counts as one
                raise ServerError(
                    ErrorCode.CAPACITY,
                    f"{spec.id} already holds {len(held) + 1} data variants ({', '.join(keys)}), the most this server "
                    "keeps in memory; use one of those, or start the server with a larger --max-env-variants",
                )
            held.add(variant)

    def _create(self, req: CreateRequest, scope: str | None = None) -> str:
        rid = req.request_id
        owner = req.client_id or scope  # replay is per client (or per connection), never shared
        key = (owner, rid) if rid is not None and owner is not None else None
        fp = _fingerprint(req.model_copy(update={"client_id": None})) if key is not None else ""
        if key is not None:
            with self._lock:
                stored = self.create_replies.get(key)
            if stored is not None:
                return _replayed((stored[0], self._created_reply(rid, stored[1])), fp, rid or "")
        env_id = _normalize_id(req.env_id)
        spec = self.specs.get(env_id)
        if spec is None:
            raise ServerError(ErrorCode.UNKNOWN_ENV, f"env {req.env_id!r} is not served here; served: {sorted(self.specs)}")
        env_kwargs = self.client_kwargs(spec, req.env_kwargs)
        self._claim_variant(spec, env_kwargs)
        with self._lock:
            if len(self.sessions) >= self.config.max_sessions:
                raise ServerError(
                    ErrorCode.CAPACITY,
                    f"server holds {len(self.sessions)}/{self.config.max_sessions} sessions: close sessions you no "
                    "longer need, wait for idle ones to be reaped, or start the server with a larger --max-sessions "
                    "(or more servers)",
                )
            sid = self.config.session_prefix + secrets.token_hex(12)
            self.sessions[sid] = Session(sid, spec.id, None, time.monotonic())  # reserve the slot
        try:
            env = create_env(env_id=spec.id, backend="inprocess", **env_kwargs)
        except (ArlArenaError, TypeError, ValueError) as e:
            with self._lock:
                self.sessions.pop(sid, None)
            raise ServerError(ErrorCode.ENV_ERROR, f"cannot create {spec.id} with {sorted(env_kwargs)}: {str(e)[:500]}") from e
        except BaseException:
            with self._lock:
                self.sessions.pop(sid, None)
            raise
        sess = self.sessions[sid]
        sess.env = env
        sess.last_used = time.monotonic()
        created = (sid, spec.id, env.protocol.model_dump_json(), env.split)
        reply = self._created_reply(rid, created)
        with self._lock:
            self.created_total += 1
            if key is not None:
                # the pieces, not the reply: the spec (kilobytes) is the same for every session
                self.create_replies[key] = (fp, created)
                if len(self.create_replies) > CREATE_REPLAY_CACHE:
                    self.create_replies.popitem(last=False)
        return reply

    def _created_reply(self, rid: str | None, created: tuple[str, str, str, str]) -> str:
        """The create reply (SessionCreated) from its small pieces; the same bytes every time."""
        sid, env_id, protocol_json, split = created
        result = SessionCreated(
            session_id=sid,
            env_id=env_id,
            lease_s=self.config.idle_timeout_s,
            spec=self.specs[env_id],
            protocol=json.loads(protocol_json),
            split=split,
        )
        return _ok_json(rid, result.model_dump_json())

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
            raise ServerError(ErrorCode.ENV_ERROR, f"{type(e).__name__}: {str(e)[:1000]}") from e
        except Exception as e:  # an env bug must not take the server (and every other session) down
            log.exception("env %s failed on %s", sess.env_id, op)
            raise ServerError(ErrorCode.INTERNAL, f"the env raised {type(e).__name__}: {str(e)[:1000]}") from e
        raise ServerError(ErrorCode.INVALID_REQUEST, f"unknown op {op!r}")

    # ----------------------------------------------------------------- sessions

    def _get(self, sid: str) -> Session:
        sess = self.sessions.get(sid)
        if sess is not None and sess.env is not None:
            return sess
        gone = self.closed.get(sid)
        why = gone[0] if gone is not None else None
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
            self.closed[sid] = (why, None)
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
                "max_request_bytes": self.config.max_request_bytes,
                "max_json_depth": MAX_JSON_DEPTH,
                "header_timeout_s": self.config.header_timeout_s,
                "body_timeout_s": self.config.body_timeout_s,
                "ws_idle_timeout_s": self.config.ws_idle_timeout_s,
                "max_connections": self.config.max_connections,
                "max_env_variants": self.config.max_env_variants,
                "offload": self.config.offload,
                "allow_kwargs": sorted(self.config.allow_kwargs),
            },
        }


def check_token(config: ServerConfig, header: str | None) -> bool:
    """Bearer-token check (constant time). No configured token: everything is allowed."""
    if config.token is None:
        return True
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].encode(), config.token.encode())


def create_app(config: ServerConfig, router: Any = None):  # -> fastapi.FastAPI (imported lazily: the server extra)
    """The ASGI app. `app.state.manager` is the SessionManager (tests poke the reaper through it).
    `router`: a `server.workers.PeerRouter` when this is one worker of `serve --workers N`
    (requests for other workers' sessions go there)."""
    try:
        from fastapi import FastAPI, Request, WebSocket
        from fastapi.responses import JSONResponse, Response
        from starlette.websockets import WebSocketDisconnect
    except ImportError as e:  # pragma: no cover - depends on the install
        from arlarena_envs.errors import MissingDependencyError

        raise MissingDependencyError(f"the env server needs the server extra: pip install 'arlarena-envs[server]' ({e})") from e

    manager = SessionManager(config)
    ws_ids = itertools.count()

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
        peers = await router.start() if router is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            if peers is not None:
                peers.close()
            manager.close_all()

    app = FastAPI(title="ARLArena env server", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.manager = manager

    async def run(data: Any, scope: str | None) -> tuple[int, str]:
        """Run one request, here or (--workers) in the worker that holds its session."""
        if router is not None:
            routed = await router.route(data, scope)
            if routed is not None:
                return routed
        return await run_here(data, scope)

    async def run_here(data: Any, scope: str | None) -> tuple[int, str]:
        """Run one request, on the event loop or in a thread (`ServerConfig.offload`)."""
        if not manager.needs_thread(data):
            try:
                return manager.handle_obj(data, scope, inline=True)
            except _NeedsThread:  # its session is busy in a thread: wait there, not here
                pass
        return await asyncio.to_thread(manager.handle_obj, data, scope)

    def reply(status_and_body: tuple[int, str]) -> Response:
        status, body = status_and_body
        return Response(content=body, status_code=status, media_type="application/json")

    def unauthorized() -> Response:
        return reply(manager._fail(ErrorCode.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer <token>'", None))

    async def read_body(request: Request) -> bytes | tuple[int, str]:
        """The body, bounded in size (checked while it arrives) and in time (a slow client must
        not hold a request open)."""
        limit = config.max_request_bytes
        assert limit is not None
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return manager._fail(ErrorCode.TOO_LARGE, f"request body is {declared} bytes; this server accepts at most {limit}", None)

        async def collect() -> bytes | tuple[int, str]:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return manager._fail(ErrorCode.TOO_LARGE, f"request body exceeds {limit} bytes, the most this server accepts", None)
                chunks.append(chunk)
            return b"".join(chunks)

        try:
            return await asyncio.wait_for(collect(), config.body_timeout_s)
        except asyncio.TimeoutError:
            return manager._fail(ErrorCode.TIMEOUT, f"the request body did not arrive within {config.body_timeout_s:g} s", None)

    async def body_obj(request: Request, op: str, sid: str | None) -> tuple[int, str] | dict:
        raw = await read_body(request)
        if isinstance(raw, tuple):
            return raw
        data: Any = {} if not raw.strip() else manager.parse_text(raw)
        if isinstance(data, tuple):
            return data
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
        return reply(await run(data, None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:  # the last resort: still typed
        log.exception("unhandled error on %s", request.url.path)
        return reply(manager._fail(ErrorCode.INTERNAL, f"the server failed on this request ({type(exc).__name__}); it keeps serving", None))

    if router is not None:
        router.local, router.local_health, router.local_metrics = run_here, manager.health, manager.metrics

    def inline_ok(data: Any) -> bool:
        """Whether `run(data)` would answer on the event loop, here (server.fast_ws answers such
        frames without a task)."""
        return (router is None or router.is_local(data)) and not manager.needs_thread(data)

    # the hooks server.fast_ws's WebSocket protocol answers `/ws` frames with (the same handling
    # as the ASGI endpoint below, without an ASGI round trip per frame)
    app.state.fast_ws = {"manager": manager, "run": run, "inline_ok": inline_ok, "needs_thread": _NeedsThread,
                         "check_token": lambda header: check_token(config, header), "config": config}

    @app.get("/health")
    async def health() -> Response:
        own = manager.health()
        body = own if router is None else await router.health(own)
        return Response(content=body.model_dump_json(), media_type="application/json")

    @app.get("/schema")
    async def schema(request: Request) -> Response:
        if not check_token(config, request.headers.get("authorization")):
            return unauthorized()
        return JSONResponse(manager.schema())

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if not check_token(config, request.headers.get("authorization")):
            return unauthorized()
        own = manager.metrics()
        body = own if router is None else await router.metrics(own)
        return Response(content=body.model_dump_json(), media_type="application/json")

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
        return reply(await run({"op": "oracle", "session_id": sid}, None))

    @app.get("/sessions/{sid}/prompt")
    async def prompt(sid: str, request: Request) -> Response:
        if not check_token(config, request.headers.get("authorization")):
            return unauthorized()
        return reply(await run({"op": "prompt", "session_id": sid}, None))

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
            parsed = manager.parse_text(first.get("text") or first.get("bytes") or b"")
            rid = parsed.get("request_id") if isinstance(parsed, dict) else None
            request_id = rid if isinstance(rid, str) and len(rid) <= REQUEST_ID_MAX else None
            _, body = manager._fail(ErrorCode.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer <token>'", request_id)
            await websocket.send_text(body)
            await websocket.close(code=1008)
            return
        receive, send = websocket.receive, websocket.send
        scope = f"ws-{next(ws_ids)}"  # creates without a client_id replay within this connection only
        idle = config.ws_idle_timeout_s
        while True:
            try:
                msg = await (asyncio.wait_for(receive(), idle) if idle else receive())
            except asyncio.TimeoutError:
                with contextlib.suppress(Exception):
                    await websocket.close(code=1001, reason=f"idle for {idle:g} s")
                return
            except (WebSocketDisconnect, RuntimeError, OSError):
                return
            if msg["type"] == "websocket.disconnect":
                return
            raw = msg.get("text")
            if raw is None:
                raw = msg.get("bytes") or b""
            try:
                data = manager.parse_text(raw)
                body = data[1] if isinstance(data, tuple) else (await run(data, scope))[1]
            except Exception as e:  # noqa: BLE001 - never drop the connection without a reply
                log.exception("websocket request failed")
                body = manager._fail(ErrorCode.INTERNAL, f"the server failed on this frame ({type(e).__name__})", None)[1]
            try:
                await send({"type": "websocket.send", "text": body})
            except (WebSocketDisconnect, RuntimeError, OSError):
                return  # the client went away; its session stays (it may reconnect and replay)

    from arlarena_envs.server.openenv import mount_openenv

    # OpenEnv's protocol under /openenv/<Name-vN> (server/openenv.py)
    mount_openenv(app, manager, lambda header: check_token(config, header))
    return app
