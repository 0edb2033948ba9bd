"""Wire messages of the env server: pydantic models built from the contract models.

Every request carries an `op`; WebSocket frames are one JSON request -> one JSON reply. The HTTP
fallback uses the same bodies (the `op` is implied by the route). A reply is either
`{"ok": true, "request_id": ..., "result": {...}}` or
`{"ok": false, "request_id": ..., "error": {"code": ..., "message": ..., "status": ...}}`.

`request_id` makes mutating requests (create, reset, step, close) idempotent: a request that is
retried with the same id (after a dropped connection, say) gets the stored reply back and is
never executed twice.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from arlarena_envs.contract import EnvSpec, Observation, ParsedAction, StepInfo, StepResult

PROTOCOL_VERSION = 1
REQUEST_ID_MAX = 128
SESSION_ID_MAX = 64
MAX_BATCH = 4096


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
    ErrorCode.INTERNAL: 500,
}


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


RequestId = Annotated[str | None, Field(None, max_length=REQUEST_ID_MAX)]
SessionId = Annotated[str, Field(min_length=1, max_length=SESSION_ID_MAX)]


# ------------------------------------------------------------------------------- requests


class CreateRequest(_Msg):
    op: Literal["create"] = "create"
    request_id: RequestId = None
    env_id: str = Field(max_length=200)
    env_kwargs: dict[str, Any] = Field(default_factory=dict, description="make() kwargs: split, protocol overrides")


class ResetRequest(_Msg):
    op: Literal["reset"] = "reset"
    request_id: RequestId = None
    session_id: SessionId
    seed: int | None = Field(None, ge=0)
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
