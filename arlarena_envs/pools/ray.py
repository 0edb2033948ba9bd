"""`RayPool`: envs in Ray actors, for rollouts spread over many machines (a Ray cluster).

    pool = make_pool("arlarena/Sokoban-v0", 64, backend="ray", num_workers=8, address="auto")

Each actor holds a slice of the envs in-process (env i -> actor i mod W) and steps its slice
as one call, so a batch costs one round trip per actor. Results cross the wire as the contract
models' JSON (never pickled env objects). A dead actor (node loss, OOM kill, `ray.kill`) is
replaced by a fresh one; its mid-episode envs come back truncated with
`info.extra["truncated_reason"]`, the other actors' envs keep going.

`address=None` starts (or joins) a local Ray instance; `address="auto"` or "ray://host:10001"
joins a cluster. Ray is optional: pip install 'arlarena-envs[ray]'.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from arlarena_envs.contract import Observation, StepInfo, StepResult
from arlarena_envs.errors import ArlArenaError, ConfigError, MissingDependencyError
from arlarena_envs.pools import EnvPool, check_on_error, check_seeds, finish_step
from arlarena_envs.registry import create_env, get_spec


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise MissingDependencyError("backend='ray' needs Ray: pip install 'arlarena-envs[ray]'") from e
    return ray


class _EnvSlice:
    """The actor body: some envs of one id, in-process. Methods take/return JSON strings."""

    def __init__(self, env_id: str, count: int, env_kwargs: dict[str, Any]):
        self.envs = [create_env(env_id=env_id, **env_kwargs) for _ in range(count)]

    def reset(self, items: str) -> str:
        out = []
        for k, seed, options in json.loads(items):
            obs, info = self.envs[k].reset_result(seed=seed, options=options)
            out.append([obs.model_dump(mode="json"), info.model_dump(mode="json")])
        return json.dumps(out)

    def step(self, items: str) -> str:
        """Each env's StepResult JSON, or `{"error": [class name, message]}` for an env that
        could not step (the others still step)."""
        out = []
        for k, a in json.loads(items):
            try:
                out.append(self.envs[k].step_result(a).model_dump_json())
            except ArlArenaError as e:
                out.append(json.dumps({"error": [type(e).__name__, str(e)]}))
        return "[" + ",".join(out) + "]"

    def oracle(self) -> str:
        return json.dumps([e.oracle_action() if e.observation is not None else None for e in self.envs])

    def prompts(self) -> str:
        return json.dumps([e.prompt() if e.observation is not None else "" for e in self.envs])

    def pid(self) -> int:
        import os

        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this actor runs on (where a cluster placed it)."""
        import ray

        return ray.get_runtime_context().get_node_id()


def _error_from(name: str, message: str) -> ArlArenaError:
    """The typed error an actor reported by class name (an ArlArenaError class of errors.py)."""
    from arlarena_envs import errors

    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, ArlArenaError) and cls.__init__ is ArlArenaError.__init__:
        return cls(message)
    return errors.RemoteEnvError(f"{name}: {message}", code="env_error")


class RayPool(EnvPool):
    """N envs over `num_workers` Ray actors (see the module docstring)."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        env_kwargs: dict[str, Any] | None = None,
        *,
        num_workers: int | None = None,
        address: str | None = None,
        num_cpus_per_worker: float = 1.0,
        ray_init_kwargs: dict[str, Any] | None = None,
    ):
        ray = _ray()
        if num_envs < 1:
            raise ConfigError(f"num_envs must be >= 1, got {num_envs}")
        self.env_id, self.num_envs = get_spec(env_id).id, num_envs
        self.env_kwargs = dict(env_kwargs or {})
        self.protocol = get_spec(env_id).protocol.with_overrides(self.env_kwargs)
        if not ray.is_initialized():
            # address None: $RAY_ADDRESS when set, else a private local instance ("local"); Ray's
            # own default would join whatever cluster happens to run on this machine
            address = address or os.environ.get("RAY_ADDRESS") or "local"
            ray.init(address=address, include_dashboard=False, log_to_driver=False, **(ray_init_kwargs or {}))
        self._ray = ray
        n = num_workers or min(num_envs, int(ray.available_resources().get("CPU", 1)) or 1)
        self.num_workers = max(1, min(n, num_envs))
        self.assignment = [(i % self.num_workers, i // self.num_workers) for i in range(num_envs)]
        self._counts = [sum(1 for w, _ in self.assignment if w == a) for a in range(self.num_workers)]
        self._actor_cls = ray.remote(num_cpus=num_cpus_per_worker, max_restarts=0)(_EnvSlice)
        self.actors = [self._spawn(a) for a in range(self.num_workers)]
        self._active = [False] * num_envs
        self._last: list[tuple[Observation, StepInfo] | None] = [None] * num_envs
        self._pending: dict[int, str] = {}
        self.restarts = 0
        ray.get([a.pid.remote() for a in self.actors])  # fail here, not at the first step

    def _spawn(self, a: int) -> Any:
        return self._actor_cls.remote(self.env_id, self._counts[a], self.env_kwargs)

    def _replace(self, a: int, error: BaseException) -> None:
        reason = f"ray actor {a} lost: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        try:
            self._ray.kill(self.actors[a])
        except Exception:  # noqa: BLE001 - already dead
            pass
        self.actors[a] = self._spawn(a)
        self.restarts += 1
        for i, (w, _) in enumerate(self.assignment):
            if w == a and self._active[i]:
                self._pending[i] = reason
                self._active[i] = False

    def _by_actor(self, items: Sequence[tuple[int, Any]]) -> dict[int, list[tuple[int, int, Any]]]:
        groups: dict[int, list[tuple[int, int, Any]]] = {}
        for i, payload in items:
            a, k = self.assignment[i]
            groups.setdefault(a, []).append((i, k, payload))
        return groups

    def _gather(self, refs: dict[int, Any]) -> dict[int, Any]:
        """ray.get each actor's answer; a dead actor is replaced and maps to None."""
        from ray.exceptions import RayActorError

        out: dict[int, Any] = {}
        for a, ref in refs.items():
            try:
                out[a] = json.loads(self._ray.get(ref))
            except RayActorError as e:
                self._replace(a, e)
                out[a] = None
        return out

    def reset(self, seeds, options=None):
        seeds = check_seeds(seeds, self.num_envs)
        opts = list(options) if options is not None else [None] * self.num_envs
        results: list[Any] = [None] * self.num_envs
        for _attempt in range(2):
            todo = [i for i in range(self.num_envs) if results[i] is None]
            if not todo:
                break
            groups = self._by_actor([(i, (seeds[i], opts[i])) for i in todo])
            refs = {a: self.actors[a].reset.remote(json.dumps([[k, p[0], p[1]] for _, k, p in g])) for a, g in groups.items()}
            got = self._gather(refs)
            for a, g in groups.items():
                if got[a] is None:
                    continue
                for (i, _, _), (obs, info) in zip(g, got[a]):
                    results[i] = (Observation.model_validate(obs), StepInfo.model_validate(info))
        for i, r in enumerate(results):
            if r is None:
                raise ConfigError(f"env {i}: its ray actor died twice during reset")
            self._pending.pop(i, None)
            self._active[i] = True
            self._last[i] = r
        return results

    def step(self, actions, on_error="raise"):
        if len(actions) != self.num_envs:
            raise ConfigError(f"need {self.num_envs} actions, got {len(actions)}")
        check_on_error(on_error)
        errors: dict[int, BaseException] = {}
        out: list[StepResult | None] = [None] * self.num_envs
        items = []
        for i, a in enumerate(actions):
            if a is None:
                continue
            if i in self._pending:
                out[i] = self._truncated(i, self._pending.pop(i))
                continue
            wire = a.model_dump(mode="json") if hasattr(a, "model_dump") else a
            items.append((i, wire))
        groups = self._by_actor(items)
        refs = {a: self.actors[a].step.remote(json.dumps([[k, p] for _, k, p in g])) for a, g in groups.items()}
        got = self._gather(refs)
        for a, g in groups.items():
            if got[a] is None:
                for i, _, _ in g:
                    out[i] = self._truncated(i, self._pending.pop(i, f"ray actor {a} lost"))
                continue
            for (i, _, _), r in zip(g, got[a]):
                if "error" in r:
                    errors[i] = _error_from(*r["error"])
                    continue
                res = StepResult.model_validate(r)
                self._last[i] = (res.observation, res.info)
                if res.done:
                    self._active[i] = False
                out[i] = res
        return finish_step(out, errors, on_error)

    def _truncated(self, i: int, reason: str) -> StepResult:
        last = self._last[i]
        assert last is not None
        obs, info = last
        return StepResult(
            observation=obs, reward=0.0, terminated=False, truncated=True,
            info=info.model_copy(update={"extra": {**info.extra, "truncated_reason": reason}, "action": None}),
        )

    def _per_env(self, method: str, default: Any) -> list[Any]:
        refs = {a: getattr(actor, method).remote() for a, actor in enumerate(self.actors)}
        got = self._gather(refs)
        return [default if got[a] is None or i in self._pending else got[a][k] for i, (a, k) in enumerate(self.assignment)]

    def oracle_actions(self):
        return self._per_env("oracle", None)

    def prompts(self):
        return self._per_env("prompts", "")

    def close(self) -> None:
        for a in getattr(self, "actors", []):
            try:
                self._ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []


__all__ = ["RayPool"]
