"""`ArlArenaAgentLoop`: one episode of a registered env inside verl's rollout (verl 0.9.x).

verl runs one agent loop per trajectory (`AgentLoopWorker._run_agent_loop`, registry
`verl.experimental.agent_loop.agent_loop.register`). Ours plays the episode with our episode
runner (`arlarena_envs.episodes.run_episodes`) on a one-env pool of our pools (any backend:
inprocess, subprocess, remote, docker, ray), so the prompt of every turn is the env's template
rendered by the env, exactly as in our trainer. Each turn's response comes from verl's LLM
server (`server_manager.generate(prompt_ids=...)`, the vLLM/SGLang replicas verl manages).

verl's output has one sequence per trajectory; SAMPO trains one row per turn. The whole
`EpisodeRecord` (every turn's prompt ids, response ids, log-probs, reward, state hash) rides in
`extra_fields["arlarena_episode"]`, and `turns.turn_rows` expands it before the update. The
trajectory-level fields verl fills (prompts/responses = turn 0, rm_scores = the episode
reward) keep verl's own postprocessing and metrics working.

Agent-loop config (verl's `actor_rollout_ref.rollout.agent.agent_loop_config_path` YAML):

    - name: arlarena_agent
      _target_: arlarena_baselines.verl.agent_loop.ArlArenaAgentLoop
      env_id: arlarena/WebShop-v0
      backend: inprocess
      env_kwargs: {}

Dataset rows (`turns.task_rows`) carry `extra_info: {seed, split}`; every rollout of a prompt
(verl's `rollout.n` repeats) gets the same seed, so a group shares its task.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register

from arlarena_envs.contract import EpisodeRecord
from arlarena_envs.episodes import Reply, TurnView, run_episodes
from arlarena_envs.errors import ConfigError
from arlarena_envs.pools import EnvPool, make_pool

from arlarena_baselines.rollout import to_chat

AGENT_NAME = "arlarena_agent"
EPISODE_KEY = "arlarena_episode"


class _PoolCache:
    """Idle one-env pools per (env_id, backend, kwargs): an agent loop instance lives for one
    trajectory, a pool (and its env, its catalogue, its worker) for the whole run."""

    def __init__(self) -> None:
        self._idle: dict[str, list[EnvPool]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, make: Any) -> EnvPool:
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop()
        return make()

    def give_back(self, key: str, pool: EnvPool) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(pool)


POOLS = _PoolCache()


def _seed_of(kwargs: dict[str, Any]) -> tuple[int, str | None]:
    info = kwargs.get("extra_info") or {}
    if hasattr(info, "item") and not isinstance(info, dict):
        info = info.item()
    seed = info.get("seed", kwargs.get("seed"))
    if seed is None:
        raise ConfigError("an arlarena_agent row needs extra_info.seed (turns.task_rows writes it): it picks the task")
    return int(seed), info.get("split")


@register(AGENT_NAME)
class ArlArenaAgentLoop(AgentLoopBase):
    """Plays one episode of `env_id`; each turn is one generate call on verl's LLM server."""

    def __init__(self, *args: Any, env_id: str = "arlarena/Sokoban-v0", backend: str = "inprocess",
                 env_kwargs: dict[str, Any] | None = None, backend_kwargs: dict[str, Any] | None = None, **kwargs: Any):
        kwargs.pop("tools", None)  # verl hands every agent loop its tool list; our envs are the tools
        super().__init__(*args, **kwargs)
        self.env_id, self.backend = env_id, backend
        self.env_kwargs = dict(env_kwargs or {})
        self.env_kwargs.setdefault("action_format", "tagged")  # the trainer's parsing (<think>/<action>)
        self.backend_kwargs = dict(backend_kwargs or {})
        self.prompt_length = int(self.rollout_config.prompt_length)
        self.response_length = int(self.rollout_config.response_length)

    def _pool_key(self, split: str | None) -> str:
        import json

        return json.dumps([self.env_id, self.backend, self.env_kwargs, self.backend_kwargs, split], sort_keys=True, default=str)

    def _make_pool(self, split: str | None) -> EnvPool:
        kw = dict(self.env_kwargs)
        if split is not None:
            kw["split"] = split
        return make_pool(self.env_id, 1, backend=self.backend, env_kwargs=kw, **self.backend_kwargs)

    def encode(self, prompt: str) -> list[int]:
        """The env prompt as one user message, chat template applied (as our trainer's engines)."""
        ids = self.tokenizer(to_chat(self.tokenizer, prompt), add_special_tokens=False)["input_ids"]
        if len(ids) > self.prompt_length:
            raise ConfigError(
                f"a {self.env_id} prompt has {len(ids)} tokens > rollout.prompt_length={self.prompt_length}; raise "
                "data.max_prompt_length / rollout.prompt_length or lower the env's history_length"
            )
        return list(ids)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        seed, split = _seed_of(kwargs)
        loop = asyncio.get_running_loop()
        calls = {"n": 0, "generate_s": 0.0}

        async def generate(prompt_ids: list[int]) -> Reply:
            import time

            t0 = time.perf_counter()
            out = await self.server_manager.generate(request_id=uuid4().hex, prompt_ids=prompt_ids, sampling_params=sampling_params)
            calls["n"] += 1
            calls["generate_s"] += time.perf_counter() - t0
            ids = list(out.token_ids)[: self.response_length]
            lps = list(out.log_probs)[: len(ids)] if out.log_probs else None
            return Reply(self.tokenizer.decode(ids, skip_special_tokens=True), prompt_ids, ids, lps)

        def policy(view: TurnView) -> list[Reply]:
            # called by the runner in a worker thread; generation runs on verl's event loop
            futures = [asyncio.run_coroutine_threadsafe(generate(self.encode(p)), loop) for p in view.prompts]
            return [f.result() for f in futures]

        key = self._pool_key(split)
        pool = POOLS.take(key, lambda: self._make_pool(split))
        try:
            episode = (await asyncio.to_thread(run_episodes, pool, policy, [seed], split=split))[0]
        except BaseException:
            pool.close()  # a pool in an unknown state is not reused
            raise
        POOLS.give_back(key, pool)
        return self.output_of(episode, calls["generate_s"])

    def output_of(self, episode: EpisodeRecord, generate_s: float = 0.0) -> AgentLoopOutput:
        """verl's trajectory-level output: turn 0's tokens, the episode reward as rm score, and
        the whole EpisodeRecord in extra_fields (expanded to turn rows before the update)."""
        if not episode.turns:
            raise ConfigError(f"{self.env_id} episode (seed {episode.seed}) has no turn: the env ended at reset")
        first = episode.turns[0]
        response = list(first.response_ids or [])
        out = AgentLoopOutput(
            prompt_ids=list(first.prompt_ids or []),
            response_ids=response,
            response_mask=[1] * len(response),
            response_logprobs=list(first.logprobs) if first.logprobs is not None else None,
            reward_score=episode.total_reward,
            num_turns=2 * len(episode.turns),
            metrics=AgentLoopMetrics(generate_sequences=generate_s),
            extra_fields={
                EPISODE_KEY: episode.model_dump(mode="json"),
                "turn_scores": [t.reward for t in episode.turns],
                "tool_rewards": [],
            },
        )
        return out
