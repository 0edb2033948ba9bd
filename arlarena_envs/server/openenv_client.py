"""A typed OpenEnv client for `arlarena serve` (needs OpenEnv: `pip install 'arlarena-envs[openenv]'`).

    from arlarena_envs.server.openenv_client import ArlArenaOpenEnv, openenv_url
    with ArlArenaOpenEnv(base_url=openenv_url("http://127.0.0.1:8000", "arlarena/Sokoban-v0")).sync() as env:
        r = env.reset(seed=3)                     # r.observation: OpenEnvObservation (state_hash, prompt, ...)
        r = env.step(OpenEnvAction(text="<think>...</think><action>up</action>"))

Any OpenEnv client works against the same URL (`GenericEnvClient` gets the fields as a dict);
this one parses them into our models.
"""

from __future__ import annotations

from typing import Any

from arlarena_envs.errors import MissingDependencyError
from arlarena_envs.server.openenv import PREFIX, OpenEnvAction, OpenEnvObservation, OpenEnvState

try:
    from openenv.core.client_types import StepResult
    from openenv.core.env_client import EnvClient
except ImportError as e:  # pragma: no cover - depends on the install
    raise MissingDependencyError(f"the OpenEnv client needs OpenEnv: pip install 'arlarena-envs[openenv]' ({e})") from e


def openenv_url(server_url: str, env_id: str) -> str:
    """The OpenEnv base URL of `env_id` on an `arlarena serve` at `server_url`."""
    name = env_id.split("/", 1)[-1]
    return f"{server_url.rstrip('/')}{PREFIX}/{name}"


class ArlArenaOpenEnv(EnvClient[OpenEnvAction, OpenEnvObservation, OpenEnvState]):
    """OpenEnv `EnvClient` whose observations are `OpenEnvObservation`s."""

    def _step_payload(self, action: OpenEnvAction | str) -> dict[str, Any]:
        if isinstance(action, str):
            action = OpenEnvAction(text=action)
        return action.model_dump(mode="json")

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[OpenEnvObservation]:
        obs = OpenEnvObservation.model_validate(
            {**payload.get("observation", {}), "reward": payload.get("reward"), "done": payload.get("done", False)}
        )
        return StepResult(observation=obs, reward=payload.get("reward"), done=bool(payload.get("done", False)),
                          metadata=payload.get("metadata"))

    def _parse_state(self, payload: dict[str, Any]) -> OpenEnvState:
        return OpenEnvState.model_validate(payload)
