"""OpenEnv's wire protocol, served by `arlarena serve` beside our own `/ws`.

Stacks that speak OpenEnv (its `EnvClient`/`GenericEnvClient`, TRL, NeMo Gym's, SkyRL's and
verifiers' OpenEnv adapters) reach every served env at its own base URL:

    http://HOST:PORT/openenv/<Name-vN>          e.g. /openenv/Sokoban-v0

    WS   <base>/ws        one env per connection; frames {"type": "reset"|"step"|"state"|"close",
                          "data": {...}} answered by {"type": "observation"|"state"|"error", "data": {...}}
    GET  <base>/schema    JSON schemas of the action, observation and state models
    GET  <base>/health    {"status": "healthy"}
    GET  <base>/metadata  name, description, version
    GET  <base>/state     the state model of a fresh env (OpenEnv's HTTP routes are stateless)
    POST <base>/reset     stateless reset: a fresh env, reset, its first observation
    GET  /openenv         the served env ids and their base URLs

The protocol is implemented here (OpenEnv's server package is not needed to serve it); the
models follow OpenEnv 0.10 (`openenv.core.env_server.types`): Action and Observation forbid
unknown fields, an observation frame is `{"observation": <fields except reward/done>, "reward",
"done"}`. OpenEnv's serializer keeps only declared Observation fields, so everything a trainer
needs (`state_hash`, `parse_status`, `won`, `score`, the paper-style `prompt`, ...) is a
declared field of `OpenEnvObservation`. Reset data keys other than seed, episode_id,
task_index and options are ignored, as OpenEnv's server ignores kwargs its env does not take.
"""

# no `from __future__ import annotations`: FastAPI resolves the route annotations at runtime

import asyncio
import json
import secrets
import threading
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arlarena_envs.contract import Observation, StepInfo
from arlarena_envs.errors import ArlArenaError, ResetNeededError

PREFIX = "/openenv"

# OpenEnv's WSErrorCode values (openenv.core.env_server.types)
INVALID_JSON = "INVALID_JSON"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
VALIDATION_ERROR = "VALIDATION_ERROR"
EXECUTION_ERROR = "EXECUTION_ERROR"
CAPACITY_REACHED = "CAPACITY_REACHED"
FACTORY_ERROR = "FACTORY_ERROR"
SESSION_ERROR = "SESSION_ERROR"


class OpenEnvAction(BaseModel):
    """One action: the model's raw response text (or a bare action); the env parses it."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the model's response (parsed by the env's protocol) or a bare action")
    metadata: dict[str, Any] = Field(default_factory=dict, description="ignored by the env (OpenEnv's Action field)")


class OpenEnvObservation(BaseModel):
    """An observation with every `info` key as a declared field (OpenEnv drops undeclared ones)."""

    model_config = ConfigDict(extra="forbid")

    done: bool = Field(False, description="terminated or truncated")
    reward: float | None = Field(None, description="step reward (None after reset)")
    metadata: dict[str, Any] = Field(default_factory=dict)
    text: str = Field(description="the env's current observation text (not the whole prompt)")
    prompt: str = Field(description="the paper-style prompt of the next turn, rebuilt from the env's template")
    task: str = Field(description="the task description of the episode")
    step: int = Field(ge=0, description="steps taken in this episode")
    admissible_actions: list[str] | None = None
    state_hash: str = Field(description="canonical hash of the true env state (GiGPO anchors, group checks)")
    parse_status: str = Field("ok", description="parse outcome of the last action (ok, no_tag, inadmissible, ...)")
    valid_action: bool = True
    format_valid: bool = True
    action: str | None = Field(None, description="the action the env executed (None if none)")
    won: bool = False
    score: float = Field(0.0, description="env-specific task score")
    terminated: bool = False
    truncated: bool = False
    extra: dict[str, Any] = Field(default_factory=dict, description="env-specific info (info['extra'])")


class OpenEnvState(BaseModel):
    """OpenEnv's State (episode_id, step_count) plus where the episode came from."""

    model_config = ConfigDict(extra="allow")

    episode_id: str | None = None
    step_count: int = Field(0, ge=0)
    env_id: str = ""
    split: str = ""
    seed: int | None = None
    task_index: int | None = None
    state_hash: str | None = None


class OpenEnvResetData(BaseModel):
    """The reset message's data (keys we do not use are dropped before validation)."""

    model_config = ConfigDict(extra="forbid")

    seed: int | None = Field(None, ge=0)
    episode_id: str | None = Field(None, max_length=255)
    task_index: int | None = Field(None, ge=0)
    options: dict[str, Any] | None = None


RESET_KEYS = frozenset(OpenEnvResetData.model_fields)


def observation_of(obs: Observation, info: StepInfo, prompt: str, reward: float | None = None,
                   terminated: bool = False, truncated: bool = False) -> OpenEnvObservation:
    """Our typed reset/step result -> the OpenEnv observation (every info key declared)."""
    return OpenEnvObservation(
        done=terminated or truncated,
        reward=reward,
        text=obs.text,
        prompt=prompt,
        task=obs.task,
        step=obs.step,
        admissible_actions=obs.admissible_actions,
        state_hash=obs.state_hash,
        parse_status=info.parse_status.value,
        valid_action=info.valid_action,
        format_valid=info.format_valid,
        action=info.action,
        won=info.won,
        score=info.score,
        terminated=terminated,
        truncated=truncated,
        extra=info.extra,
    )


def serialize(observation: OpenEnvObservation) -> dict[str, Any]:
    """OpenEnv's `serialize_observation`: {observation: fields but reward/done, reward, done[, metadata]}."""
    out: dict[str, Any] = {
        "observation": observation.model_dump(mode="json", exclude={"reward", "done"}),
        "reward": observation.reward,
        "done": observation.done,
    }
    if observation.metadata:
        out["metadata"] = observation.metadata
    return out


class OpenEnvSession:
    """One env behind one OpenEnv WebSocket connection."""

    def __init__(self, env_id: str, env: Any):
        self.env_id, self.env = env_id, env
        self.episode_id: str | None = None
        self.seed: int | None = None

    def reset(self, data: dict[str, Any]) -> OpenEnvObservation:
        req = OpenEnvResetData.model_validate({k: v for k, v in data.items() if k in RESET_KEYS})
        options = dict(req.options or {})
        if req.task_index is not None:
            options["task_index"] = req.task_index
        obs, info = self.env.reset_result(seed=req.seed, options=options or None)
        self.episode_id = req.episode_id or secrets.token_hex(8)
        self.seed = req.seed
        return observation_of(obs, info, self.env.prompt())

    def step(self, data: dict[str, Any]) -> OpenEnvObservation:
        action = OpenEnvAction.model_validate(data)
        if self.env.observation is None:
            raise ResetNeededError("send a reset message before the first step")
        r = self.env.step_result(action.text)
        return observation_of(r.observation, r.info, self.env.prompt(), r.reward, r.terminated, r.truncated)

    def state(self) -> OpenEnvState:
        obs = self.env.observation
        return OpenEnvState(
            episode_id=self.episode_id,
            step_count=obs.step if obs is not None else 0,
            env_id=self.env_id,
            split=self.env.split,
            seed=self.seed,
            task_index=self.env.task_index if obs is not None else None,
            state_hash=obs.state_hash if obs is not None else None,
        )


def schemas() -> dict[str, Any]:
    """What OpenEnv's GET /schema returns (SchemaResponse)."""
    return {
        "action": OpenEnvAction.model_json_schema(),
        "observation": OpenEnvObservation.model_json_schema(),
        "state": OpenEnvState.model_json_schema(),
    }


def _error(message: str, code: str, **extra: Any) -> str:
    return json.dumps({"type": "error", "data": {"message": message, "code": code, **extra}})


def mount_openenv(app: Any, manager: Any, authorized: Callable[[str | None], bool]) -> None:
    """Add the OpenEnv routes of every env `manager` serves to the FastAPI `app`.

    Sessions here count against the server's `max_sessions` together with ours; the action size
    limit and `offload` are the server's (`manager.config`); `authorized(authorization header)`
    is the server's token check."""
    from fastapi import Request, WebSocket
    from fastapi.responses import JSONResponse
    from starlette.websockets import WebSocketDisconnect

    from arlarena_envs import __version__
    from arlarena_envs.registry import create_env

    config = manager.config
    by_name = {spec.name: spec for spec in manager.specs.values()}  # "Sokoban-v0" -> spec
    live = {"n": 0}
    live_lock = threading.Lock()

    async def run(fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args) if config.offload else fn(*args)

    def denied(request: Request) -> JSONResponse | None:
        if authorized(request.headers.get("authorization")):
            return None
        return JSONResponse({"detail": "missing or wrong token: send 'Authorization: Bearer <token>'"}, status_code=401)

    def guard(name: str, request: Request | None = None) -> tuple[Any, JSONResponse | None]:
        """(spec, None), or (None, the 404/401 reply)."""
        spec = by_name.get(name)
        if spec is None:
            return None, JSONResponse(
                {"detail": f"env {name!r} is not served here; served: {sorted(by_name)} (base URL {PREFIX}/<Name-vN>)"},
                status_code=404,
            )
        return spec, (denied(request) if request is not None else None)

    @app.get(PREFIX)
    async def openenv_index(request: Request) -> JSONResponse:
        return JSONResponse({"envs": {spec.id: f"{PREFIX}/{name}" for name, spec in sorted(by_name.items())}})

    @app.get(PREFIX + "/{name}/health")
    async def openenv_health(name: str) -> JSONResponse:
        _, refused = guard(name)
        return refused or JSONResponse({"status": "healthy"})

    @app.get(PREFIX + "/{name}/schema")
    async def openenv_schema(name: str, request: Request) -> JSONResponse:
        _, refused = guard(name, request)
        return refused or JSONResponse(schemas())

    @app.get(PREFIX + "/{name}/metadata")
    async def openenv_metadata(name: str, request: Request) -> JSONResponse:
        spec, refused = guard(name, request)
        if refused:
            return refused
        return JSONResponse({
            "name": spec.id, "description": spec.description, "version": f"v{spec.version} (arlarena-envs {__version__})",
            "author": None, "documentation_url": None, "readme_content": None,
        })

    @app.get(PREFIX + "/{name}/state")
    async def openenv_state(name: str, request: Request) -> JSONResponse:
        spec, refused = guard(name, request)
        if refused:
            return refused
        return JSONResponse(OpenEnvState(env_id=spec.id, split=spec.default_split).model_dump(mode="json"))

    @app.post(PREFIX + "/{name}/reset")
    async def openenv_reset(name: str, request: Request) -> JSONResponse:
        spec, refused = guard(name, request)
        if refused:
            return refused
        raw = await request.body()
        try:
            data = json.loads(raw) if raw.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as e:
            return JSONResponse({"detail": f"invalid JSON body: {e}"}, status_code=422)

        def once() -> dict[str, Any]:
            env = create_env(env_id=spec.id, backend="inprocess")
            try:
                return serialize(OpenEnvSession(spec.id, env).reset(data))
            finally:
                env.close()

        try:
            return JSONResponse(await run(once))
        except ValidationError as e:
            return JSONResponse({"detail": json.loads(e.json())}, status_code=422)

    @app.post(PREFIX + "/{name}/step")
    async def openenv_step(name: str) -> JSONResponse:
        # OpenEnv's HTTP /step runs the action on a fresh, never-reset env; ours need a reset
        # first, so an episode is played over the WebSocket, where the env lives.
        _, refused = guard(name)
        return refused or JSONResponse(
            {"detail": f"HTTP /step is stateless in OpenEnv and our envs need a reset first: play episodes over "
                       f"the WebSocket {PREFIX}/{name}/ws (OpenEnv's EnvClient does)"},
            status_code=409,
        )

    @app.websocket(PREFIX + "/{name}/ws")
    async def openenv_ws(websocket: WebSocket, name: str) -> None:
        await websocket.accept()
        spec = by_name.get(name)
        if spec is None:
            await websocket.send_text(_error(f"env {name!r} is not served here; served: {sorted(by_name)}", FACTORY_ERROR,
                                             factory_name=name))
            await websocket.close(code=1008)
            return
        if not authorized(websocket.headers.get("authorization")):
            await websocket.send_text(_error("missing or wrong token: send 'Authorization: Bearer <token>' "
                                             "(EnvClient(headers=...))", SESSION_ERROR))
            await websocket.close(code=1008)
            return
        with live_lock:
            active = live["n"] + len(manager.sessions)
            full = active >= config.max_sessions
            if not full:
                live["n"] += 1
        if full:
            await websocket.send_text(_error(
                f"server holds {active}/{config.max_sessions} sessions: close sessions or start the server with a larger "
                "--max-sessions", CAPACITY_REACHED, active_sessions=active, max_sessions=config.max_sessions))
            await websocket.close(code=1013)
            return
        env = None
        try:
            try:
                env = await run(lambda: create_env(env_id=spec.id, backend="inprocess"))
            except (ArlArenaError, TypeError, ValueError) as e:
                await websocket.send_text(_error(f"cannot create {spec.id}: {e}", FACTORY_ERROR, factory_name=spec.id))
                return
            session = OpenEnvSession(spec.id, env)
            while True:
                msg = await websocket.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                raw = msg.get("text") if msg.get("text") is not None else (msg.get("bytes") or b"")
                reply = await run(handle_frame, session, raw, config.max_action_bytes)
                if reply is None:  # a close message
                    return
                await websocket.send_text(reply)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        finally:
            with live_lock:
                live["n"] -= 1
            if env is not None:
                env.close()
            try:
                await websocket.close()
            except (RuntimeError, OSError):
                pass


def handle_frame(session: OpenEnvSession, raw: str | bytes, max_action_bytes: int) -> str | None:
    """One OpenEnv frame -> its reply frame (None for `close`). Errors are OpenEnv error frames."""
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        return _error(f"Invalid JSON: {e}", INVALID_JSON)
    if not isinstance(msg, dict):
        return _error("a message must be a JSON object {'type': ..., 'data': {...}}", INVALID_JSON)
    kind = msg.get("type", "")
    data = msg.get("data") or {}
    try:
        if not isinstance(data, dict):
            raise TypeError("'data' must be a JSON object")
        if kind == "reset":
            return json.dumps({"type": "observation", "data": serialize(session.reset(data))})
        if kind == "step":
            text = data.get("text")
            if isinstance(text, str) and len(text.encode("utf-8", errors="surrogatepass")) > max_action_bytes:
                raise ValueError(f"action is longer than {max_action_bytes} bytes (serve with --max-action-bytes to raise it)")
            return json.dumps({"type": "observation", "data": serialize(session.step(data))})
        if kind == "state":
            return json.dumps({"type": "state", "data": session.state().model_dump(mode="json")})
        if kind == "close":
            return None
        return _error(f"Unknown message type: {kind!r} (reset, step, state, close)", UNKNOWN_TYPE)
    except ValidationError as e:
        return _error("Invalid message", VALIDATION_ERROR, errors=json.loads(e.json()))
    except (ArlArenaError, TypeError, ValueError) as e:
        return _error(f"{type(e).__name__}: {e}", EXECUTION_ERROR)
    except Exception as e:  # an env bug must not take the server down; the client sees it
        return _error(f"the env raised {type(e).__name__}: {e}", EXECUTION_ERROR)
