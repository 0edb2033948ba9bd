"""Wire messages of the env server: pydantic models built from the contract models.

Every request carries an `op`; WebSocket frames are one JSON request -> one JSON reply. The HTTP
fallback uses the same bodies (the `op` is implied by the route). A reply is either
`{"ok": true, "request_id": ..., "result": {...}}` or
`{"ok": false, "request_id": ..., "error": {"code": ..., "message": ..., "status": ...}}`.

`request_id` makes mutating requests (create, reset, step, close) idempotent: a request that is
retried with the same id and the same body (after a dropped connection, say) gets the stored
reply back and is never executed twice; the same id with a different body is refused
(`request_id_conflict`). Replay caches are scoped: per session for session ops, per `client_id`
(a random id each client picks) for `create`, so two clients using request id "1" never share
a session.

Wire types are strict (`seed` must be a JSON integer: "1", true, 1.0 are refused), and a frame
is bounded in size and nesting depth *before* it is parsed (`check_frame`).
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, Strict, TypeAdapter

from arlarena_envs.contract import EnvSpec, Observation, ParsedAction, StepInfo, StepResult

PROTOCOL_VERSION = 1
REQUEST_ID_MAX = 128
SESSION_ID_MAX = 64
MAX_BATCH = 4096
CLIENT_ID_MAX = 64
MAX_JSON_DEPTH = 32  # deepest nesting of arrays/objects a frame may have (ours need 6)


class ErrorCode(str, enum.Enum):
    """Typed error codes; `HTTP_STATUS[code]` is the status the HTTP fallback answers with."""

    MALFORMED = "malformed"  # not JSON, or not a JSON object
    INVALID_REQUEST = "invalid_request"  # JSON, but wrong fields or types
    UNAUTHORIZED = "unauthorized"  # token missing or wrong
    UNKNOWN_ENV = "unknown_env"  # the env id is not served here
    UNKNOWN_SESSION = "unknown_session"  # no such session (never existed, or reaped)
    SESSION_CLOSED = "session_closed"  # the session was closed by its client
    CAPACITY = "capacity"  # the server holds its maximum number of sessions
    ACTION_TOO_LARGE = "action_too_large"  # the action exceeds the server's size limit
    RESET_NEEDED = "reset_needed"  # step before reset / after the episode ended
    ENV_ERROR = "env_error"  # the env rejected the request (bad seed, bad option, ...)
    REQUEST_CONFLICT = "request_id_conflict"  # a request id reused with a different body
    TOO_LARGE = "request_too_large"  # the frame/body exceeds the size or nesting limit
    TIMEOUT = "timeout"  # the request body did not arrive in time
    INTERNAL = "internal"  # a bug: the server keeps serving


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.MALFORMED: 400,
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.UNKNOWN_ENV: 404,
    ErrorCode.UNKNOWN_SESSION: 404,
    ErrorCode.SESSION_CLOSED: 410,
    ErrorCode.CAPACITY: 503,
    ErrorCode.ACTION_TOO_LARGE: 413,
    ErrorCode.RESET_NEEDED: 409,
    ErrorCode.ENV_ERROR: 400,
    ErrorCode.REQUEST_CONFLICT: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.TIMEOUT: 408,
    ErrorCode.INTERNAL: 500,
}


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


RequestId = Annotated[str | None, Strict(), Field(None, max_length=REQUEST_ID_MAX)]
ClientId = Annotated[str | None, Strict(), Field(None, min_length=8, max_length=CLIENT_ID_MAX)]
SessionId = Annotated[str, Strict(), Field(min_length=1, max_length=SESSION_ID_MAX)]
# strict: a JSON integer only ("1", true, 1.0 and "1_0" are refused, as the in-process env does)
Seed = Annotated[int | None, Strict(), Field(None, ge=0)]


# ------------------------------------------------------------------------------- requests


class CreateRequest(_Msg):
    op: Literal["create"] = "create"
    request_id: RequestId = None
    client_id: ClientId = Field(
        None, description="a random id the client picked; scopes the create replay cache (no client_id: no replay)"
    )
    env_id: Annotated[str, Strict(), Field(max_length=200)]
    env_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="make() kwargs: split, protocol overrides and the spec's `client_kwargs` (the server refuses others)",
    )


class ResetRequest(_Msg):
    op: Literal["reset"] = "reset"
    request_id: RequestId = None
    session_id: SessionId
    seed: Seed = None
    options: dict[str, Any] | None = None


class StepRequest(_Msg):
    op: Literal["step"] = "step"
    request_id: RequestId = None
    session_id: SessionId
    action: str | ParsedAction


class CloseRequest(_Msg):
    op: Literal["close"] = "close"
    request_id: RequestId = None
    session_id: SessionId


class OracleRequest(_Msg):
    op: Literal["oracle"] = "oracle"
    request_id: RequestId = None
    session_id: SessionId


class PromptRequest(_Msg):
    op: Literal["prompt"] = "prompt"
    request_id: RequestId = None
    session_id: SessionId


class BatchRequest(_Msg):
    """Several requests (any ops but batch) in one frame: one round trip for a pool's worker.
    Each item keeps its own request_id (replay works per item); replies come in order."""

    op: Literal["batch"] = "batch"
    request_id: RequestId = None
    requests: list[dict[str, Any]] = Field(max_length=MAX_BATCH)


Request = Annotated[
    Union[CreateRequest, ResetRequest, StepRequest, CloseRequest, OracleRequest, PromptRequest, BatchRequest],
    Field(discriminator="op"),
]
REQUEST_ADAPTER: TypeAdapter[Any] = TypeAdapter(Request)
MUTATING_OPS = frozenset({"create", "reset", "step", "close"})


# HTTP bodies: the same fields minus the ones the route carries
# ------------------------------------------------------------------------------- results


class SessionCreated(_Msg):
    session_id: str
    env_id: str
    lease_s: float | None = Field(description="idle seconds after which the reaper frees the session (None: never)")
    spec: EnvSpec
    protocol: dict[str, Any] = Field(description="the session env's protocol (spec protocol + overrides)")
    split: str


class ResetResult(_Msg):
    observation: Observation
    info: StepInfo


class OracleResult(_Msg):
    action: str | None


class PromptResult(_Msg):
    prompt: str


class Closed(_Msg):
    session_id: str
    closed: bool = True


class BatchResult(_Msg):
    replies: list["Reply"]


Result = Union[SessionCreated, ResetResult, StepResult, OracleResult, PromptResult, Closed, BatchResult]


class ErrorBody(_Msg):
    code: ErrorCode
    message: str
    status: int


class Reply(_Msg):
    ok: bool
    replayed: bool = Field(False, description="served from the replay cache: the request had already been applied")
    request_id: str | None = None
    result: Result | None = None
    error: ErrorBody | None = None


BatchResult.model_rebuild()


class Health(_Msg):
    status: Literal["ok"] = "ok"
    version: str
    protocol_version: int = PROTOCOL_VERSION
    env_ids: list[str]
    sessions: int
    max_sessions: int
    uptime_s: float


class Metrics(_Msg):
    sessions_active: int
    sessions_created_total: int
    sessions_closed_total: int
    sessions_reaped_total: int
    requests_total: dict[str, int]
    errors_total: dict[str, int]
    step_latency_ms_p50: float | None
    step_latency_ms_p99: float | None
    uptime_s: float


RESULT_TYPES: dict[str, type[BaseModel]] = {
    "create": SessionCreated,
    "reset": ResetResult,
    "step": StepResult,
    "close": Closed,
    "oracle": OracleResult,
    "prompt": PromptResult,
    "batch": BatchResult,
}

WIRE_MODELS: dict[str, type[BaseModel]] = {
    m.__name__: m
    for m in (
        CreateRequest, ResetRequest, StepRequest, CloseRequest, OracleRequest, PromptRequest, BatchRequest,
        SessionCreated, BatchResult, ResetResult, StepResult, OracleResult, PromptResult, Closed, ErrorBody, Reply, Health, Metrics,
    )
}


# ------------------------------------------------------------------------------- frame limits

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


def json_nesting_depth(raw: str) -> int:
    """Deepest nesting of arrays/objects in a JSON text, without parsing it.

    depth = max over positions of (#'[' + #'{') - (#']' + #'}') before it, brackets inside JSON
    strings not counted. Cheap: strings are cut out by one regex; when the text has no more
    opening brackets than `MAX_JSON_DEPTH` that count bounds the depth, else a vectorised
    cumulative sum gives it. (Malformed JSON may give any number; the parser refuses it next.)"""
    bare = _JSON_STRING.sub("", raw)
    opens = bare.count("[") + bare.count("{")
    if opens <= MAX_JSON_DEPTH:
        return opens
    import numpy as np

    codes = np.frombuffer(bare.encode("utf-8", errors="surrogatepass"), dtype=np.uint8)
    return int(np.cumsum(_BRACKET_STEP[codes], dtype=np.int32).max(initial=0))


def _bracket_steps() -> "Any":
    import numpy as np

    table = np.zeros(256, dtype=np.int32)
    table[[ord("["), ord("{")]] = 1
    table[[ord("]"), ord("}")]] = -1
    return table


_BRACKET_STEP = _bracket_steps()


def action_size(action: Any) -> int:
    """UTF-8 bytes of an action as it arrives: a string, or a ParsedAction's text fields
    (`action` + `think`), so a ParsedAction cannot carry more than a string may."""
    if isinstance(action, str):
        return len(action.encode("utf-8", errors="surrogatepass"))
    if isinstance(action, ParsedAction):
        action = action.model_dump()
    if isinstance(action, dict):
        return sum(len(v.encode("utf-8", errors="surrogatepass")) for v in action.values() if isinstance(v, str))
    return 0
