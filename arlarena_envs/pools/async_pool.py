"""`AsyncEnvPool`: envs that progress independently, for rollout engines with continuous batching.

    apool = AsyncEnvPool(make_pool("arlarena/ALFWorld-v0", 64, backend="subprocess"))
    futs = [apool.reset_async(i, seed=s) for i, s in enumerate(seeds)]
    ...
    fut = apool.step_async(i, reply_text)     # returns at once: a Future[Completion]
    for done in apool.poll(timeout=0.1):      # whatever finished, in the order it finished
        done.index, done.result, done.prompt  # env i's StepResult and its next prompt
        ...                                   # -> send done.prompt to the engine right away

Every env has at most one call (reset or step) in flight; calls on different envs run side by
side in a thread pool ("lanes"), so an engine that answers env 3 before env 17 can step env 3
while env 17 still waits for its reply, and a slow env (a 5 s TextWorld game build, a 50 ms
ALFWorld step) delays only itself. A lane calls the wrapped pool's one-env methods
(`EnvPool.step_env`, `reset_env`, `prompt_env`): for the server backends (subprocess, remote,
docker) each env has its own connection and a worker loss is handled as in lockstep (restart,
the env's episode comes back truncated with `info.extra["truncated_reason"]`).

Completions come back two ways: the Future each `*_async` call returns (wait on it together with
the engine's own futures, `concurrent.futures.wait(..., return_when=FIRST_COMPLETED)`), and
`poll()`, which hands out each finished call once. An env error (e.g. a step before any reset)
is the Completion's `.error`, never a lost call; a bug of ours fails the Future.

The lockstep `EnvPool` API is a thin layer on top (`step(actions)` submits every non-None
action and waits for all of them), with the same semantics as the wrapped pool, so
`run_episodes(AsyncEnvPool(pool), ...)` plays exactly as `run_episodes(pool, ...)`;
`episodes.run_episodes_async` is the runner that does not wait for the slowest env.

Threads: in-process envs share the GIL (and some engines keep global state), so an in-process
pool gets one lane unless `max_threads` says otherwise (worth it for envs that wait on I/O);
server-backed pools get one lane per env (up to 256): their envs step in other processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from arlarena_envs.contract import Observation, StepInfo, StepResult
from arlarena_envs.errors import ArlArenaError, ConfigError
from arlarena_envs.pools import EnvPool, InProcessPool, check_on_error, check_seeds, finish_step
from arlarena_envs.server.client import check_seed

MAX_LANES = 256


@dataclass(frozen=True)
class Completion:
    """One finished call on one env.

    `result` is a StepResult (op "step") or the (Observation, StepInfo) pair (op "reset"), None
    when the env raised; `error` is that typed error. `prompt` is env i's prompt right after
    the call (fetched in the same lane, when the pool was made with `prompts=True`, the call
    succeeded and the episode goes on). `seconds` is the call's wall time in its lane."""

    index: int
    op: str
    result: StepResult | tuple[Observation, StepInfo] | None
    error: ArlArenaError | None
    prompt: str | None
    seconds: float
    finished: float  # time.monotonic() when the lane finished


class AsyncEnvPool(EnvPool):
    """Any `EnvPool`, with envs that step independently (see the module docstring)."""

    def __init__(self, pool: EnvPool, *, max_threads: int | None = None, prompts: bool = True):
        if max_threads is not None and max_threads < 1:
            raise ConfigError(f"max_threads must be >= 1, got {max_threads}")
        self.pool = pool
        self.env_id, self.num_envs, self.protocol = pool.env_id, pool.num_envs, pool.protocol
        if max_threads is None:
            max_threads = 1 if isinstance(pool, InProcessPool) or not pool.independent_envs else min(pool.num_envs, MAX_LANES)
        self.lanes = max_threads
        self.with_prompts = prompts
        self._executor = cf.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="arlarena-lane")
        self._inflight: dict[int, cf.Future] = {}  # env -> its call; at most one per env
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ asynchronous API

    def step_async(self, i: int, action: Any) -> "cf.Future[Completion]":
        """Start stepping env i with `action`; returns at once."""
        return self._submit(i, "step", lambda: self.pool.step_env(i, action))

    def reset_async(self, i: int, seed: int | None = None, options: dict[str, Any] | None = None) -> "cf.Future[Completion]":
        """Start resetting env i; returns at once."""
        seed = check_seed(seed)
        return self._submit(i, "reset", lambda: self.pool.reset_env(i, seed, options))

    def poll(self, timeout: float | None = None) -> list[Completion]:
        """The calls that finished and were not handed out yet, in the order they finished.
        Blocks up to `timeout` s (None: until one finishes) when none has; [] when nothing is
        in flight or the timeout passed."""
        with self._lock:
            futs = list(self._inflight.values())
        if not futs:
            return []
        done, _ = cf.wait(futs, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        with self._lock:
            for i, f in list(self._inflight.items()):
                if f.done():
                    del self._inflight[i]
                    out.append(f.result())
        out.sort(key=lambda c: c.finished)
        return out

    def busy(self) -> frozenset[int]:
        """The envs with a call still running."""
        with self._lock:
            return frozenset(i for i, f in self._inflight.items() if not f.done())

    def _submit(self, i: int, op: str, call: Any) -> "cf.Future[Completion]":
        if self._closed:
            raise ConfigError("this AsyncEnvPool is closed; make a new pool")
        if not 0 <= i < self.num_envs:
            raise ConfigError(f"env index {i} out of range for a pool of {self.num_envs}")

        def lane() -> Completion:
            t0 = time.perf_counter()
            try:
                result, error = call(), None
            except ArlArenaError as e:
                result, error = None, e
            # the next turn's prompt, in the same lane (an ended episode has no next turn)
            wants = self.with_prompts and error is None and not (op == "step" and result.done)
            prompt = self.pool.prompt_env(i) if wants else None
            return Completion(i, op, result, error, prompt, time.perf_counter() - t0, time.monotonic())

        with self._lock:
            prev = self._inflight.get(i)
            if prev is not None and not prev.done():
                raise ConfigError(f"env {i} already has a call in flight; wait for it (poll or its future) before the next")
            fut = self._executor.submit(lane)
            self._inflight[i] = fut
        return fut

    def _wait_all(self, futs: Mapping[int, "cf.Future[Completion]"]) -> dict[int, Completion]:
        cf.wait(list(futs.values()))
        with self._lock:
            for i, f in futs.items():
                if self._inflight.get(i) is f:
                    del self._inflight[i]
        return {i: f.result() for i, f in futs.items()}

    def _idle(self, what: str) -> None:
        busy = self.busy()
        if busy:
            raise ConfigError(f"{what} needs every env idle; envs {sorted(busy)[:8]} have calls in flight (poll them first)")

    # ------------------------------------------------------------------ lockstep API (a thin layer)

    def reset(self, seeds: Sequence[int | None], options: Sequence[dict[str, Any] | None] | None = None):
        seeds = check_seeds(seeds, self.num_envs)  # all checked before any env resets
        opts = list(options) if options is not None else [None] * self.num_envs
        if len(opts) != self.num_envs:
            raise ConfigError(f"need {self.num_envs} options, got {len(opts)}")
        self._idle("reset")
        got = self._wait_all({i: self.reset_async(i, seeds[i], opts[i]) for i in range(self.num_envs)})
        for c in got.values():
            if c.error is not None:
                raise c.error
        return [got[i].result for i in range(self.num_envs)]

    def step(self, actions: Sequence[Any], on_error: str = "raise") -> list[StepResult | None]:
        if len(actions) != self.num_envs:
            raise ConfigError(f"need {self.num_envs} actions, got {len(actions)}")
        check_on_error(on_error)
        self._idle("step")
        got = self._wait_all({i: self.step_async(i, a) for i, a in enumerate(actions) if a is not None})
        out: list[Any] = [None] * self.num_envs
        errors: dict[int, BaseException] = {}
        for i, c in got.items():
            if c.error is not None:
                errors[i] = c.error
            else:
                out[i] = c.result
        return finish_step(out, errors, on_error)

    def prompts(self) -> list[str]:
        self._idle("prompts")
        return self.pool.prompts()

    def prompt_env(self, i: int) -> str:
        return self.pool.prompt_env(i)

    def oracle_actions(self) -> list[str | None]:
        self._idle("oracle_actions")
        return self.pool.oracle_actions()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.pool.close()


__all__ = ["AsyncEnvPool", "Completion", "MAX_LANES"]
