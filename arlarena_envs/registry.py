"""The registry: `registry/*.yaml` (one file per env id and version) -> `EnvSpec` -> gym ids.

Spec files are looked up, in order, in `$ARLARENA_REGISTRY_PATH` (os.pathsep-separated
folders), the copy shipped inside the wheel (`arlarena_envs/_registry`) and the repository's
`registry/` folder (editable installs). The first file that defines an id wins.

Gymnasium 1.x has no plugin loading, so ids exist once `arlarena_envs` is imported (which
calls `register_all`); `gym.make("arlarena_envs:arlarena/Sokoban-v0")` imports it for you.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from pydantic import ValidationError

from arlarena_envs.contract import EnvSpec, GoldenFingerprint
from arlarena_envs.errors import ArlArenaError, ConfigError, EnvNotFoundError, InvalidArgumentError, MissingDependencyError, SpecError

_lock = threading.Lock()
_specs: dict[str, EnvSpec] | None = None
_paths: dict[str, Path] = {}


def registry_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("ARLARENA_REGISTRY_PATH", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    dirs += [here / "_registry", here.parent / "registry"]
    return [d for d in dirs if d.is_dir()]


def load_spec_file(path: str | Path) -> EnvSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise SpecError(f"cannot read spec {path}: {e}") from e
    if not isinstance(data, dict):
        raise SpecError(f"spec {path} must be a YAML mapping")
    try:
        spec = EnvSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(f"invalid spec {path}:\n{e}") from e
    expected = spec.name + ".yaml"
    if path.name != expected:
        raise SpecError(f"spec {path} defines {spec.id}; its file must be named {expected}")
    return spec


def load_specs(refresh: bool = False) -> dict[str, EnvSpec]:
    """All specs, by id (cached; immutable copies, as `get_spec`)."""
    return {k: v.model_copy(deep=True) for k, v in _cached_specs(refresh).items()}


def _cached_specs(refresh: bool = False) -> dict[str, EnvSpec]:
    """The cache itself (never handed out: callers get deep copies)."""
    global _specs
    with _lock:
        if _specs is None or refresh:
            specs: dict[str, EnvSpec] = {}
            _paths.clear()
            for d in registry_dirs():
                for f in sorted(d.glob("*.yaml")):
                    spec = load_spec_file(f)
                    if spec.id not in specs:
                        specs[spec.id] = spec
                        _paths[spec.id] = f
            _specs = specs
        return _specs


def _normalize_id(env_id: str) -> str:
    if ":" in env_id:  # "arlarena_envs:arlarena/Sokoban-v0"
        env_id = env_id.split(":", 1)[1]
    if "/" not in env_id:
        env_id = "arlarena/" + env_id
    return env_id


def get_spec(env_id: str) -> EnvSpec:
    """The spec of `env_id`: an immutable model (a fresh deep copy each call)."""
    specs = _cached_specs()  # copy only the spec asked for (a pool makes hundreds of envs)
    key = _normalize_id(env_id)
    if key in specs:
        return specs[key].model_copy(deep=True)  # frozen, and its dicts/lists are the caller's own
    if "-v" not in key.rsplit("/", 1)[-1]:
        versions = sorted((s for s in specs if s.rsplit("-v", 1)[0] == key), key=lambda s: int(s.rsplit("-v", 1)[1]))
        if versions:
            raise EnvNotFoundError(f"{env_id!r} needs a version; registered: {versions}")
    raise EnvNotFoundError(f"no env {env_id!r} in the registry; registered ids: {sorted(specs)}")


def spec_path(env_id: str) -> Path:
    spec = get_spec(env_id)
    return _paths[spec.id]


def load_entry_point(entry_point: str) -> Any:
    """Import "module:attr". A missing optional dependency becomes MissingDependencyError."""
    module_name, attr = entry_point.split(":")
    try:
        module = importlib.import_module(module_name)
    except MissingDependencyError:
        raise
    except ImportError as e:
        raise MissingDependencyError(f"cannot import {module_name} ({e}); install the extra the env needs") from e
    return getattr(module, attr)


# env backends of `create_env`: name -> "module:callable(spec, **kwargs)" (imported on use, so
# the registry depends on no env or client module)
ENV_BACKENDS: dict[str, str] = {
    "inprocess": "arlarena_envs.registry:_inprocess_env",
    "remote": "arlarena_envs.server.client:remote_env",
}


def create_env(*, env_id: str, backend: str = "inprocess", **kwargs: Any) -> gym.Env:
    """The entry point registered with Gymnasium for every spec.

    backend="inprocess" builds the spec's class here (the spec is handed to the env);
    backend="remote" returns a client of an env server (`arlarena serve`) at `url=`, with the
    same API and identical transcripts (see `arlarena_envs.server.client.remote_env`)."""
    spec = get_spec(env_id)
    try:
        target = ENV_BACKENDS[backend]
    except KeyError:
        raise ConfigError(f"unknown backend {backend!r}; use one of {sorted(ENV_BACKENDS)}") from None
    return load_entry_point(target)(spec, **kwargs)


def _inprocess_env(spec: EnvSpec, url: str | None = None, token: str | None = None, **kwargs: Any) -> gym.Env:
    if url is not None or token is not None:
        raise ConfigError("url/token only apply to backend='remote'; drop them or pass backend='remote'")
    missing = [x for x in spec.requires if importlib.util.find_spec(_EXTRA_PROBES.get(x, x)) is None]
    if missing:
        raise MissingDependencyError(
            f"{spec.id} needs the extra(s) {missing}: pip install 'arlarena-envs[{','.join(missing)}]'"
        )
    cls = load_entry_point(spec.entry_point)
    try:
        return cls(spec=spec, **{**spec.kwargs, **kwargs})
    except ArlArenaError:
        raise
    except (TypeError, ValueError) as e:  # an env kwarg of the wrong type or value (e.g. int("x"))
        raise InvalidArgumentError(f"{spec.id} cannot be built with {kwargs!r}: {type(e).__name__}: {e}") from e


# import name to look for, per pip extra named in a spec's `requires`
_EXTRA_PROBES = {"alfworld": "alfworld", "textworld": "textworld", "server": "fastapi", "train": "torch"}


def register_all() -> list[str]:
    """Register every spec with Gymnasium (idempotent). Returns the ids."""
    ids = []
    for spec in _cached_specs().values():  # read only: no copies
        if spec.id not in gym.registry:
            gym.register(
                id=spec.id,
                entry_point=create_env,
                kwargs={"env_id": spec.id},
                disable_env_checker=False,
            )
        ids.append(spec.id)
    return sorted(ids)


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """`gym.make` for an ARLArena id, with a helpful error for unknown ids and missing extras."""
    spec = get_spec(env_id)
    register_all()
    return gym.make(spec.id, **kwargs)


def write_golden(env_id: str, golden: list[GoldenFingerprint]) -> Path:
    """Rewrite only the top-level `golden:` section of the env's spec file (the rest of the file,
    comments included, is kept). Used when an env version is created or deliberately bumped."""
    path = spec_path(env_id)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    section = yaml.safe_dump({"golden": [g.model_dump() for g in golden]}, sort_keys=False, allow_unicode=True, width=100)
    start = next((i for i, ln in enumerate(lines) if re.match(r"^golden:", ln)), None)
    if start is None:
        out = "".join(lines).rstrip("\n") + "\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if re.match(r"^[A-Za-z_]", lines[i])), len(lines))
        out = "".join(lines[:start]) + section + "".join(lines[end:])
    EnvSpec.model_validate(yaml.safe_load(out))
    path.write_text(out, encoding="utf-8")
    load_specs(refresh=True)
    return path
