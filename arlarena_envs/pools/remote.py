"""Pools of envs that live on env servers: the shared machinery, and `RemotePool`.

`ServerPool` spreads N envs over W workers (env i -> worker i mod W); a worker is anything that
serves `arlarena serve` at a URL (a local subprocess, a container, a remote host). Each env is
a `RemoteEnv` session; a batch step sends one `batch` request per worker (every step of that
worker's envs in one frame, one round trip), the W workers concurrently.

Failure handling (the pool contract): when a worker is lost mid-episode, the env's step gets
`ServerLostError`; the pool restarts the worker once (whichever env noticed first), opens fresh
sessions for every env that lived on it, and returns, for each env that was mid-episode, a
StepResult with `truncated=True` and `info.extra["truncated_reason"]` (the last observation,
reward 0). Envs on other workers keep going. Those envs must be reset before stepping again.
A worker that is alive but did not answer (paused, or its connection dropped) is not lost: the
batch is sent again with the same request ids (up to `resume_timeout_s`), and the steps it had
already applied come back from its replay cache, so nothing is truncated or run twice.
A session the server dropped while the worker lived on (the idle reaper freed it during a long
pause) is recovered the same way, for that env alone: a fresh session, and the episode reported
truncated with the server's reason. An env that cannot step (reset needed) does not stop the
others (see `EnvPool.step`).

`RemotePool` uses servers someone else runs (`urls=[...]`); it cannot restart them, so
"restart" means waiting up to `reconnect_timeout_s` for the server to come back (a supervisor
such as compose's `restart: unless-stopped` brings it back) before giving up.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from typing import Any, Sequence

from arlarena_envs.contract import Observation, StepInfo, StepResult
from arlarena_envs.errors import ArlArenaError, ConfigError, RemoteEnvError, ServerLostError
from arlarena_envs.pools import EnvPool, check_on_error, check_seeds, finish_step
from arlarena_envs.registry import get_spec
from arlarena_envs.server.client import RemoteEnv, ServerChannel, raise_for_error


class Worker:
    """One env server. Subclasses start/stop a real process; this base only knows a URL."""

    url: str
    token: str | None = None
    generation = 0  # bumped on every restart

    def alive(self) -> bool:
        return True

    def restart(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class URLWorker(Worker):
    """A server we do not own: `restart` waits for it to answer /health again."""

    def __init__(self, url: str, token: str | None = None, reconnect_timeout_s: float = 30.0):
        self.url, self.token, self.reconnect_timeout_s = url.rstrip("/"), token, reconnect_timeout_s

    def restart(self) -> None:
        wait_healthy(self.url, self.reconnect_timeout_s, alive=None)


def wait_healthy(url: str, timeout_s: float, alive: Any = None, interval_s: float = 0.05) -> None:
    """Poll GET {url}/health until it answers 200 (retrying refused/reset connections).

    `alive()` (optional) is checked between tries so a crashed process fails fast."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last: str = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise ServerLostError(f"env server for {url} exited before it became healthy")
            try:
                r = client.get(url + "/health")
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(interval_s)
            interval_s = min(interval_s * 1.5, 0.5)
    raise ServerLostError(f"env server at {url} not healthy after {timeout_s:g} s ({last})")


class ServerPool(EnvPool):
    """N RemoteEnv sessions over W workers, with restart-and-truncate on worker loss."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        workers: Sequence[Worker],
        env_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        max_threads: int = 64,
        resume_timeout_s: float = 10.0,
    ):
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        if not workers:
            raise ConfigError("a server pool needs at least one worker")
        self.env_id, self.num_envs = get_spec(env_id).id, num_envs
        self.workers = list(workers)
        self.env_kwargs = dict(env_kwargs or {})
        self.resume_timeout_s = float(resume_timeout_s)  # how long a live worker may pause before it counts as lost
        # fail fast on a lost worker: the pool restarts it, no long client-side retries
        self.client_kwargs = {"retries": 1, "backoff": 0.02, **(client_kwargs or {})}
        self.assignment = [i % len(self.workers) for i in range(num_envs)]
        self._locks = [threading.Lock() for _ in self.workers]
        self._executor = cf.ThreadPoolExecutor(max_workers=max(1, min(num_envs, max_threads)), thread_name_prefix="arlarena-pool")
        self._active = [False] * num_envs
        self._pending: dict[int, str] = {}  # env index -> truncation reason to report at its next step
        self._last: list[tuple[Observation, StepInfo] | None] = [None] * num_envs
        self._closed = False
        self.restarts = 0
        self.clients: list[Any] = [None] * num_envs
        self.channels: list[Any] = [None] * len(self.workers)
        try:
            for wi in range(len(self.workers)):
                self._open_channel(wi)
            list(self._executor.map(self._open, range(num_envs)))
            self.protocol = self.clients[0].protocol
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ sessions

    def _open(self, i: int) -> None:
        w = self.workers[self.assignment[i]]
        self.clients[i] = RemoteEnv(self.env_id, url=w.url, token=w.token, **self.client_kwargs, **self.env_kwargs)

    def _open_channel(self, wi: int) -> None:
        """The worker's batch connection (used by `step`; sessions have their own)."""
        w = self.workers[wi]
        old = self.channels[wi]
        if old is not None:
            old.close()
        kw = {k: v for k, v in self.client_kwargs.items() if k in ("transport", "timeout", "retries", "backoff")}
        self.channels[wi] = ServerChannel(w.url, token=w.token, **kw)

    def _recover(self, i: int, generation: int, error: BaseException) -> str:
        """Restart env i's worker (once per loss) and reopen its envs' sessions; returns the reason."""
        wi = self.assignment[i]
        w = self.workers[wi]
        reason = f"worker {wi} ({w.url}) lost: {error}"
        with self._locks[wi]:
            if w.generation == generation:  # nobody restarted it since env i's request began
                w.restart()
                w.generation += 1
                self.restarts += 1
                self._open_channel(wi)
                for j in range(self.num_envs):
                    if self.assignment[j] != wi:
                        continue
                    old = self.clients[j]
                    if old is not None:
                        old._closed = True  # its server is gone: nothing to close there
                        old.channel.close()
                    if self._active[j]:
                        self._pending[j] = reason
                        self._active[j] = False
                    self._open(j)
            return self._pending.get(i, reason)

    def _reopen(self, i: int, error: BaseException) -> str:
        """Env i's session is gone from a live server (reaped while idle): open a fresh one there;
        a mid-episode env is reported truncated. Returns the reason."""
        wi = self.assignment[i]
        reason = f"worker {wi} ({self.workers[wi].url}) dropped env {i}'s session: {error}"
        with self._locks[wi]:
            old = self.clients[i]
            if old is not None:
                old._closed = True  # nothing left to close on the server
                old.channel.close()
            self._open(i)
            if self._active[i]:
                self._active[i] = False
                self._pending[i] = reason
        return self._pending.get(i, reason)

    def _truncated(self, i: int, reason: str) -> StepResult:
        last = self._last[i]
        assert last is not None
        obs, info = last
        extra = {**info.extra, "truncated_reason": reason}
        return StepResult(
            observation=obs,
            reward=0.0,
            terminated=False,
            truncated=True,
            info=info.model_copy(update={"extra": extra, "action": None}),
        )

    # ------------------------------------------------------------------ one env (async lanes)

    # every env has its own session and connection: calls on different envs may overlap
    independent_envs = True

    def step_env(self, i: int, action: Any) -> StepResult:
        """Step env i over its own connection; a lost worker is restarted and the env's episode
        comes back truncated, as in `step`."""
        reason = self._pending.pop(i, None)
        if reason is not None:
            return self._truncated(i, reason)
        w = self.workers[self.assignment[i]]
        gen = w.generation
        try:
            try:
                res = self.clients[i].step_result(action)
            except ServerLostError as e:
                if not w.alive() or e.op is None:
                    raise
                # alive but silent (paused, dropped connection): settle the step by its request id
                _, res = self.clients[i].resume(e, timeout_s=self.resume_timeout_s)
        except ServerLostError as e:
            reason = self._recover(i, gen, e)
            return self._truncated(i, self._pending.pop(i, reason))
        except RemoteEnvError as e:
            if e.code != "unknown_session":
                raise
            reason = self._reopen(i, e)  # reaped while idle: a fresh session; the episode is over
            if i in self._pending:
                return self._truncated(i, self._pending.pop(i, reason))
            raise
        self._last[i] = (res.observation, res.info)
        if res.done:
            self._active[i] = False
        return res

    def reset_env(self, i: int, seed: int | None, options: dict[str, Any] | None = None) -> tuple[Observation, StepInfo]:
        """Reset env i over its own connection (once more on a fresh session if its worker was lost)."""
        for attempt in range(2):
            gen = self.workers[self.assignment[i]].generation
            try:
                out = self.clients[i].reset_result(seed=seed, options=options)
                break
            except ServerLostError as e:
                if attempt:
                    raise
                self._recover(i, gen, e)
            except RemoteEnvError as e:
                if attempt or e.code != "unknown_session":
                    raise
                self._reopen(i, e)
        self._pending.pop(i, None)
        self._active[i] = True
        self._last[i] = out
        return out

    def prompt_env(self, i: int) -> str:
        gen = self.workers[self.assignment[i]].generation
        try:
            return self.clients[i].prompt()
        except ServerLostError as e:
            self._recover(i, gen, e)
            last = self._last[i]
            return last[0].text if last is not None else ""

    # ------------------------------------------------------------------ EnvPool API

    def reset(self, seeds, options=None):
        seeds = check_seeds(seeds, self.num_envs)
        opts = list(options) if options is not None else [None] * self.num_envs
        if len(opts) != self.num_envs:
            raise ConfigError(f"need {self.num_envs} options, got {len(opts)}")

        # a session reaped while idle is reopened, a lost worker recovered (reset_env)
        return list(self._executor.map(lambda i: self.reset_env(i, seeds[i], opts[i]), range(self.num_envs)))

    def step(self, actions, on_error="raise"):
        if len(actions) != self.num_envs:
            raise ConfigError(f"need {self.num_envs} actions, got {len(actions)}")
        check_on_error(on_error)
        out: list[StepResult | None] = [None] * self.num_envs
        errors: dict[int, BaseException] = {}
        by_worker: dict[int, list[int]] = {}
        for i, a in enumerate(actions):
            if a is None:
                continue
            reason = self._pending.pop(i, None)
            if reason is not None:
                out[i] = self._truncated(i, reason)
            else:
                by_worker.setdefault(self.assignment[i], []).append(i)

        def run(wi: int, idxs: list[int]) -> list[tuple[int, StepResult | BaseException]]:
            w, chan = self.workers[wi], self.channels[wi]
            gen = w.generation
            items = []
            for i in idxs:
                a = actions[i]
                wire = a.model_dump(mode="json") if hasattr(a, "model_dump") else a
                c = self.clients[i]
                items.append({"op": "step", "session_id": c.session_id, "action": wire, "request_id": chan.next_request_id()})
            try:
                try:
                    reply = chan.send("batch", {"requests": items})
                except ServerLostError as e:
                    if not w.alive():
                        raise
                    # the worker lives (a pause, a dropped connection): settle the batch by its
                    # items' request ids; steps it had applied come back from its replay cache
                    _, result = chan.resume(e, timeout_s=self.resume_timeout_s)
                    reply = {"ok": True, "result": result}
                if not reply["ok"]:
                    raise_for_error(reply.get("error") or {}, w.url)
                replies = reply["result"]["replies"]
                lost = chan.reconnected and any(
                    not r["ok"] and r["error"]["code"] == "unknown_session" for r in replies
                )
                if lost:  # the worker came back without our sessions
                    raise ServerLostError(f"env server {w.url} lost our sessions (restarted?)")
            except ServerLostError as e:
                self._recover(idxs[0], gen, e)
                return [(i, self._truncated(i, self._pending.pop(i, f"worker {wi} lost: {e}"))) for i in idxs]
            done: list[tuple[int, StepResult | BaseException]] = []
            for i, r in zip(idxs, replies):
                if not r["ok"]:
                    if r["error"].get("code") == "unknown_session":  # reaped: this env alone recovers
                        reason = self._reopen(i, RemoteEnvError(r["error"].get("message", ""), code="unknown_session"))
                        if self._last[i] is not None and i in self._pending:
                            done.append((i, self._truncated(i, self._pending.pop(i, reason))))
                            continue
                    try:
                        raise_for_error(r["error"], w.url)
                    except ArlArenaError as e:
                        done.append((i, e))
                    continue
                res = StepResult.model_validate(r["result"])
                self._last[i] = (res.observation, res.info)
                self.clients[i]._last = res.observation
                if res.done:
                    self._active[i] = False
                done.append((i, res))
            return done

        if len(by_worker) == 1:
            results = [run(*next(iter(by_worker.items())))]
        else:
            results = list(self._executor.map(lambda kv: run(*kv), by_worker.items()))
        for part in results:
            for i, res in part:
                if isinstance(res, BaseException):
                    errors[i] = res
                else:
                    out[i] = res
        return finish_step(out, errors, on_error)

    def oracle_actions(self):
        def one(i: int) -> str | None:
            if i in self._pending:
                return None
            gen = self.workers[self.assignment[i]].generation
            try:
                return self.clients[i].oracle_action()
            except ServerLostError as e:
                self._recover(i, gen, e)
                return None
            except RemoteEnvError as e:
                if e.code != "unknown_session":
                    raise
                self._reopen(i, e)
                return None

        return list(self._executor.map(one, range(self.num_envs)))

    def prompts(self):
        def one(i: int) -> str:
            gen = self.workers[self.assignment[i]].generation
            try:
                return self.clients[i].prompt()
            except (ServerLostError, RemoteEnvError) as e:
                if isinstance(e, ServerLostError):
                    self._recover(i, gen, e)
                elif e.code == "unknown_session":
                    self._reopen(i, e)
                else:
                    raise
                last = self._last[i]
                return last[0].text if last is not None else ""

        return list(self._executor.map(one, range(self.num_envs)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for c in self.clients:
                if c is not None:
                    c.close()
            for ch in self.channels:
                if ch is not None:
                    ch.close()
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)
            for w in self.workers:
                w.close()


class RemotePool(ServerPool):
    """Envs on env servers that run elsewhere: `urls=["http://host-a:8000", ...]`."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        env_kwargs: dict[str, Any] | None = None,
        *,
        urls: Sequence[str] | str,
        token: str | None = None,
        reconnect_timeout_s: float = 30.0,
        client_kwargs: dict[str, Any] | None = None,
    ):
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ConfigError("backend='remote' needs urls=['http://HOST:PORT', ...] (servers from `arlarena serve`)")
        workers = [URLWorker(u, token, reconnect_timeout_s) for u in urls]
        super().__init__(env_id, num_envs, workers, env_kwargs=env_kwargs, client_kwargs=client_kwargs)


__all__ = ["RemotePool", "ServerPool", "URLWorker", "Worker", "wait_healthy"]
