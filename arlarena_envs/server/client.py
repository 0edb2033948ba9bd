"""`RemoteEnv`: a Gymnasium env that is a client of an env server (`arlarena serve`).

    env = gym.make("arlarena/Sokoban-v0", backend="remote", url="http://127.0.0.1:8000")
    obs, info = env.reset(seed=7)           # same transcript as the in-process env
    env.unwrapped.step_result("up")         # the typed API: reset_result, step_result,
    env.unwrapped.oracle_action()           #   oracle_action, prompt, close

Transport: one WebSocket per env (default), or plain HTTP (`transport="http"`).

Reconnect policy: every request carries a fresh request id. When the connection drops (or a
reply does not come within `timeout` s), the client reconnects and resends the *same* request
up to `retries` times, waiting `backoff * 2**k` s between tries; the server's replay cache makes
the retry safe (a step is never executed twice). If the server cannot be reached again, or it
came back without our session (it was restarted), `ServerLostError` is raised. Error replies
become `RemoteEnvError` with the server's code (`server.messages.ErrorCode`).
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from typing import Any

import gymnasium as gym

from arlarena_envs.contract import EnvSpec, Observation, ParsedAction, Protocol, StepInfo, StepResult
from arlarena_envs.core import ACTION_MAX_CHARS, OBS_MAX_CHARS, TextEnv
from arlarena_envs.errors import (
    ConfigError,
    InvalidActionError,
    MissingDependencyError,
    RemoteEnvError,
    ResetNeededError,
    ServerLostError,
)
from arlarena_envs.spaces import UnicodeText


def _ws_url(url: str) -> str:
    url = url.rstrip("/")
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :] + "/ws"
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :] + "/ws"
    if url.startswith(("ws://", "wss://")):
        return url if url.endswith("/ws") else url + "/ws"
    raise ValueError(f"url must start with http://, https://, ws:// or wss://, got {url!r}")


def _http_url(url: str) -> str:
    url = url.rstrip("/")
    if url.startswith(("ws://", "wss://")):
        url = "http" + url[2:]
        if url.endswith("/ws"):
            url = url[:-3]
    return url


class _WSTransport:
    def __init__(self, url: str, headers: dict[str, str], timeout: float):
        try:
            from websockets.sync.client import connect
        except ImportError as e:  # pragma: no cover
            raise MissingDependencyError("the remote client needs the server extra: pip install 'arlarena-envs[server]'") from e
        self._connect, self.url, self.headers, self.timeout = connect, _ws_url(url), headers, timeout
        self.ws: Any = None

    def request(self, op: str, payload: dict[str, Any]) -> tuple[int, str]:
        import socket

        if self.ws is None:
            ws = self._connect(
                self.url,
                additional_headers=self.headers,
                open_timeout=self.timeout,
                close_timeout=1,
                max_size=None,
                compression=None,
            )
            # entering marks it as managed (websockets >= 17.1 warns otherwise); close() leaves it
            self.ws = ws.__enter__()
            sock = self.ws.socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        payload["op"] = op
        self.ws.send(json.dumps(payload))
        return 200, self.ws.recv(timeout=self.timeout)

    def close(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                ws.close()
            except (OSError, RuntimeError):  # already gone
                pass


class _HTTPTransport:
    ROUTES = {
        "create": ("POST", "/sessions"),
        "reset": ("POST", "/sessions/{sid}/reset"),
        "step": ("POST", "/sessions/{sid}/step"),
        "close": ("POST", "/sessions/{sid}/close"),
        "oracle": ("GET", "/sessions/{sid}/oracle"),
        "prompt": ("GET", "/sessions/{sid}/prompt"),
    }

    def __init__(self, url: str, headers: dict[str, str], timeout: float):
        try:
            import httpx
        except ImportError as e:  # pragma: no cover
            raise MissingDependencyError("the remote client needs the server extra: pip install 'arlarena-envs[server]'") from e
        import socket

        # TCP_NODELAY: h11 writes headers and body separately; with Nagle + delayed ACKs every
        # POST would wait ~40 ms for the server's ACK
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.client = httpx.Client(base_url=_http_url(url), headers=headers, timeout=timeout, transport=transport)

    def request(self, op: str, payload: dict[str, Any]) -> tuple[int, str]:
        method, path = self.ROUTES[op]
        payload = dict(payload)
        path = path.format(sid=payload.pop("session_id", ""))
        if method == "GET":
            r = self.client.get(path)
        else:
            r = self.client.post(path, content=json.dumps(payload), headers={"content-type": "application/json"})
        return r.status_code, r.text

    def close(self) -> None:
        self.client.close()


def _transport_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [OSError, TimeoutError, EOFError]
    try:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

        errs += [ConnectionClosed, InvalidHandshake]
        del InvalidURI
    except ImportError:  # pragma: no cover
        pass
    try:
        import httpx

        errs.append(httpx.TransportError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


def raise_for_error(error: dict[str, Any], url: str, *, lost_session: bool = False) -> None:
    """Raise the typed error of an error reply (`ResetNeededError`, `ServerLostError`, `RemoteEnvError`)."""
    code, message = error.get("code", "internal"), error.get("message", "")
    if code == "unknown_session" and lost_session:
        raise ServerLostError(f"env server {url} lost the session (restarted?): {message}")
    if code == "reset_needed":
        raise ResetNeededError(message)
    raise RemoteEnvError(f"env server {url}: {code}: {message}", code=code, status=error.get("status"))


class ServerChannel:
    """One connection to an env server with the reconnect policy (see the module docstring)."""

    def __init__(self, url: str, *, token: str | None = None, transport: str = "ws", timeout: float = 60.0, retries: int = 3, backoff: float = 0.05):
        if transport not in ("ws", "http"):
            raise ValueError(f"transport must be 'ws' or 'http', got {transport!r}")
        self.url = url
        self.retries, self.backoff, self.timeout = int(retries), float(backoff), float(timeout)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        cls = _WSTransport if transport == "ws" else _HTTPTransport
        self._transport = cls(url, headers, timeout)
        self._errors = _transport_errors()
        self.client_id = secrets.token_hex(6)
        self._counter = itertools.count()
        self.reconnected = False  # a reconnect happened: an unknown session now means a lost server

    def next_request_id(self) -> str:
        return f"{self.client_id}-{next(self._counter)}"

    def send(self, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Send one request (a fresh request id unless fields has one); the raw reply object."""
        payload = dict(fields)
        payload.setdefault("request_id", self.next_request_id())
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status, raw = self._transport.request(op, payload)
                break
            except self._errors as e:
                last = e
                self._transport.close()
                self.reconnected = True
        else:
            raise ServerLostError(
                f"env server {self.url} did not answer '{op}' after {self.retries + 1} tries ({type(last).__name__}: {last}); "
                "is it running? (arlarena serve ...)"
            )
        try:
            reply = json.loads(raw)
        except ValueError:
            raise RemoteEnvError(f"env server {self.url} sent a non-JSON reply (HTTP {status}): {raw[:200]!r}", status=status) from None
        if not isinstance(reply, dict) or "ok" not in reply:
            raise RemoteEnvError(f"env server {self.url} sent an unexpected reply (HTTP {status}): {raw[:200]!r}", status=status)
        return reply

    def call(self, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Send one request; its result, or the typed error."""
        reply = self.send(op, fields)
        if reply["ok"]:
            return reply["result"]
        raise_for_error(reply.get("error") or {}, self.url, lost_session=op != "create" and self.reconnected)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._transport.close()


class RemoteEnv(gym.Env[str, str]):
    """One session on an env server, with the in-process env's API and transcripts."""

    metadata = TextEnv.metadata

    def __init__(
        self,
        env_id: str,
        *,
        url: str,
        token: str | None = None,
        transport: str = "ws",
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.05,
        render_mode: str | None = None,
        **env_kwargs: Any,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.url, self.render_mode = url, render_mode
        self.channel = ServerChannel(url, token=token, transport=transport, timeout=timeout, retries=retries, backoff=backoff)
        self._last: Observation | None = None
        self._closed = False
        self.observation_space = UnicodeText(OBS_MAX_CHARS)
        self.action_space = UnicodeText(ACTION_MAX_CHARS)
        created = self._call("create", {"env_id": env_id, "env_kwargs": env_kwargs})
        self.session_id: str = created["session_id"]
        self.env_spec: EnvSpec = EnvSpec.model_validate(created["spec"])  # as the server has it
        self.protocol: Protocol = Protocol.model_validate(created["protocol"])
        self.split: str = created["split"]
        self.lease_s: float | None = created["lease_s"]

    # ------------------------------------------------------------------ wire

    def _call(self, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise RemoteEnvError(f"this RemoteEnv ({self.url}) is closed; make a new one", code="session_closed")
        return self.channel.call(op, fields)

    # ------------------------------------------------------------------ typed API

    def reset_result(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, StepInfo]:
        super().reset(seed=seed)
        r = self._call("reset", {"session_id": self.session_id, "seed": seed, "options": options})
        self._last = Observation.model_validate(r["observation"])
        return self._last, StepInfo.model_validate(r["info"])

    def step_result(self, action: str | bytes | ParsedAction) -> StepResult:
        if isinstance(action, (bytes, bytearray)):
            action = bytes(action).decode("utf-8", errors="replace")
        if isinstance(action, ParsedAction):
            wire: Any = action.model_dump(mode="json")
        elif isinstance(action, str):
            wire = action
        else:
            raise InvalidActionError(f"an action must be str, bytes or ParsedAction, got {type(action).__name__}")
        r = StepResult.model_validate(self._call("step", {"session_id": self.session_id, "action": wire}))
        self._last = r.observation
        return r

    def oracle_action(self) -> str | None:
        """The env's expert action in the current state (computed by the server's env)."""
        return self._call("oracle", {"session_id": self.session_id})["action"]

    def prompt(self) -> str:
        """The paper-style prompt of the current turn (rendered by the server's env)."""
        return self._call("prompt", {"session_id": self.session_id})["prompt"]

    @property
    def observation(self) -> Observation | None:
        return self._last

    # ------------------------------------------------------------------ Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        obs, info = self.reset_result(seed=seed, options=options)
        return obs.text, info.to_info()

    def step(self, action: str | bytes | ParsedAction) -> tuple[str, float, bool, bool, dict]:
        r = self.step_result(action)
        return r.observation.text, r.reward, r.terminated, r.truncated, r.info.to_info()

    def render(self) -> str | None:
        text = self._last.text if self._last is not None else ""
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def close(self) -> None:
        """Close the session on the server (best effort: a lost server has nothing to close)."""
        if self._closed:
            return
        try:
            saved, self.channel.retries = self.channel.retries, 0
            self._call("close", {"session_id": self.session_id})
        except RemoteEnvError:
            pass
        finally:
            self.channel.retries = saved
            self._closed = True
            self.channel.close()

    def __del__(self) -> None:  # a forgotten client must not leak its socket
        t = getattr(self, "channel", None)
        if t is not None:
            try:
                t.close()
            except Exception:  # noqa: BLE001 - interpreter shutdown: anything may be gone
                pass


__all__ = ["RemoteEnv", "ServerChannel", "raise_for_error"]


def remote_env(spec: EnvSpec, url: str | None = None, token: str | None = None, **kwargs: Any) -> RemoteEnv:
    """`create_env(backend="remote")`: a client of the env server at `url` for `spec`."""
    if url is None:
        raise ConfigError("backend='remote' needs url='http://127.0.0.1:PORT' (an `arlarena serve` address)")
    return RemoteEnv(spec.id, url=url, token=token, **kwargs)
