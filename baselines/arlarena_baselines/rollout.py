"""Multi-turn rollouts over an env pool, behind one engine interface.

One training sample = one turn (`contract.TurnRecord`), recorded by the episode runner
(`arlarena_envs.episodes.run_episodes`): the prompt is the env's own (`pool.prompts()`), the
engine answers every active env in one batch, the pool steps. A group is G envs reset with the
same task seed.

Engines: `HFEngine` (transformers `generate`, CPU or GPU) and `VLLMEngine` (GPU, extra `gpu`,
imported lazily). Both turn prompts into `Reply`s (text, token ids; vLLM adds its log-probs).
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

from arlarena_envs.contract import EpisodeRecord, SamplingParams
from arlarena_envs.episodes import Reply, TurnPolicy, TurnView, run_episodes
from arlarena_envs.errors import ConfigError, MissingDependencyError
from arlarena_envs.pools import EnvPool



def to_chat(tokenizer: Any, prompt: str) -> str:
    """The prompt as one user message with the tokenizer's chat template (generation prompt on)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)


class RolloutEngine(abc.ABC):
    """Turns prompts into responses."""

    tokenizer: Any

    @abc.abstractmethod
    def generate(self, prompts: Sequence[str], sampling: SamplingParams) -> list[Reply]: ...

    def sync_weights(self, model: Any) -> None:
        """Make the engine use `model`'s current weights (no-op when they are shared)."""

    def encode_prompt(self, prompt: str, max_prompt_tokens: int) -> list[int]:
        ids = self.tokenizer(to_chat(self.tokenizer, prompt), add_special_tokens=False)["input_ids"]
        if len(ids) > max_prompt_tokens:
            raise ConfigError(
                f"a prompt has {len(ids)} tokens > rollout.max_prompt_tokens={max_prompt_tokens}; raise it or "
                "lower the env's history_length"
            )
        return ids


class HFEngine(RolloutEngine):
    """transformers `generate` on the training model itself (weights always in sync)."""

    def __init__(self, model: Any, tokenizer: Any, max_prompt_tokens: int = 2048, batch_size: int = 64):
        self.model, self.tokenizer = model, tokenizer
        self.max_prompt_tokens, self.batch_size = max_prompt_tokens, batch_size

    def generate(self, prompts: Sequence[str], sampling: SamplingParams) -> list[Reply]:
        import torch

        tok = self.tokenizer
        out: list[Reply] = []
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(prompts), self.batch_size):
                chunk = prompts[start : start + self.batch_size]
                ids = [self.encode_prompt(p, self.max_prompt_tokens) for p in chunk]
                width = max(len(x) for x in ids)
                pad = tok.pad_token_id
                input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
                attn = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
                kwargs: dict[str, Any] = dict(max_new_tokens=sampling.max_new_tokens, pad_token_id=pad, eos_token_id=tok.eos_token_id)
                if sampling.temperature > 0:
                    kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                                  top_k=sampling.top_k if sampling.top_k > 0 else 0)
                else:
                    kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                with torch.no_grad():
                    gen = self.model.generate(input_ids=input_ids, attention_mask=attn, **kwargs)
                for row, p_ids in zip(gen[:, width:].tolist(), ids):
                    resp: list[int] = []
                    for t in row:
                        if t == pad and tok.eos_token_id != pad:
                            break
                        resp.append(t)
                        if t == tok.eos_token_id:
                            break
                    text = tok.decode(resp, skip_special_tokens=True)
                    out.append(Reply(text, p_ids, resp))
        finally:
            self.model.train(was_training)
        return out


VLLM_SUPPORTED = ">=0.33,<0.34"  # the versions whose weight-transfer API this engine was written against


class VLLMEngine(RolloutEngine):
    """vLLM generation (GPU only; `pip install arlarena-envs[gpu]`, vLLM 0.33.x).

    Weights are synced with vLLM's public RL weight-transfer API (read in vLLM 0.33.0's source:
    `vllm/distributed/weight_transfer/`, `vllm/v1/worker/gpu_worker.py`): the engine is built
    with `weight_transfer_config={"backend": "ipc"}` (trainer and engine share the GPU), and each
    sync is `IPCTrainerWeightTransferEngine.send_weights()` over a `ModuleSource` of the policy,
    whose control plane (init / start / update / finish) goes through `LLM.collective_rpc` to the
    worker's weight-update methods, as vLLM's own AsyncLLM and HTTP routes do. The update carries
    CUDA IPC handles, which vLLM ships pickled between its own processes on this machine; that
    needs VLLM_ALLOW_INSECURE_SERIALIZATION=1 in the engine's environment (set here before the
    engine starts). Other vLLM versions: refused with the supported range (older releases have no
    weight-transfer API; later ones may change it)."""

    def __init__(self, model_path: str, tokenizer: Any, max_prompt_tokens: int = 2048, gpu_memory_utilization: float = 0.4,
                 seed: int = 0, dtype: str = "bfloat16", max_model_len: int | None = None):
        import os

        try:
            import vllm
        except ImportError as e:
            raise MissingDependencyError("rollout.engine=vllm needs vLLM on a GPU machine: pip install 'arlarena-envs[gpu]'") from e
        from packaging.specifiers import SpecifierSet

        if vllm.__version__ not in SpecifierSet(VLLM_SUPPORTED):
            raise MissingDependencyError(
                f"vLLM {vllm.__version__} is installed; this engine supports vLLM{VLLM_SUPPORTED} (its weight-transfer API): "
                f"pip install 'vllm{VLLM_SUPPORTED}' (or pip install 'arlarena-envs[gpu]')"
            )
        os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # see the class docstring
        from vllm import LLM

        self.tokenizer, self.max_prompt_tokens = tokenizer, max_prompt_tokens
        self.llm = LLM(model=model_path, gpu_memory_utilization=gpu_memory_utilization, seed=seed, enforce_eager=True,
                       dtype=dtype, max_model_len=max_model_len, weight_transfer_config={"backend": "ipc"})
        self._sender: Any = None
        self._sender_model: Any = None

    def generate(self, prompts: Sequence[str], sampling: SamplingParams) -> list[Reply]:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
            max_tokens=sampling.max_new_tokens, skip_special_tokens=True, logprobs=0,  # 0: the sampled token's only
        )
        ids = [self.encode_prompt(p, self.max_prompt_tokens) for p in prompts]
        outs = self.llm.generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=False)
        replies = []
        for x, o in zip(ids, outs):
            c = o.outputs[0]
            lps = [step[t].logprob for step, t in zip(c.logprobs, c.token_ids)] if c.logprobs else None
            replies.append(Reply(c.text, x, list(c.token_ids), lps))
        return replies

    def sync_weights(self, model: Any) -> None:
        """Copy `model`'s current parameters into the engine (same GPU, CUDA IPC), then drop the
        prefix cache (its KV entries were computed with the old weights)."""
        from vllm.distributed.weight_transfer import ModuleSource
        from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo, IPCTrainerWeightTransferEngine

        if self._sender is None or self._sender_model is not model:
            self._sender = IPCTrainerWeightTransferEngine.trainer_init(
                IPCTrainerInitInfo(rank=0), client=_CollectiveRPCWeightClient(self.llm), source=ModuleSource(model)
            )
            self._sender_model = model
        self._sender.send_weights()
        self.llm.reset_prefix_cache()


def _pickled_handles(update_info: dict[str, Any]) -> dict[str, Any]:
    """IPCWeightTransferUpdateInfo's wire form for a process hop: `ipc_handles` (tuples with
    torch classes) -> `ipc_handles_pickled` (base64 of their pickle), which vLLM's worker reads."""
    import base64
    import pickle

    if update_info.get("ipc_handles") is None:
        return update_info
    out = {k: v for k, v in update_info.items() if k != "ipc_handles"}
    out["ipc_handles_pickled"] = base64.b64encode(pickle.dumps(update_info["ipc_handles"])).decode("ascii")
    return out


class _CollectiveRPCWeightClient:
    """vLLM's `VLLMWeightSyncClient` protocol (four methods) for an offline `LLM`, through
    `LLM.collective_rpc` to the workers' weight-transfer methods. IPC handles travel pickled
    and base64-encoded (`ipc_handles_pickled`), as vLLM's HTTP client sends them."""

    def __init__(self, llm: Any):
        self.llm = llm

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self.llm.collective_rpc("init_weight_transfer_engine", kwargs={"init_info": init_info})

    def start_weight_update(self) -> None:
        self.llm.collective_rpc("start_weight_update")

    def update_weights(self, update_info: dict[str, Any] | list[dict[str, Any]]) -> None:
        infos = update_info if isinstance(update_info, list) else [update_info]
        shipped = [_pickled_handles(i) for i in infos]
        self.llm.collective_rpc("update_weights", kwargs={"update_info": shipped if isinstance(update_info, list) else shipped[0]})

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self.llm.collective_rpc("finish_weight_update")


def engine_policy(engine: RolloutEngine, sampling: SamplingParams) -> TurnPolicy:
    """The episode runner's policy for a model: one batched `generate` over the active envs'
    prompts per turn."""

    def act(view: TurnView) -> list[Reply]:
        return engine.generate(view.prompts, sampling)

    return act


def collect_rollouts(
    pool: EnvPool,
    engine: RolloutEngine,
    group_seeds: Sequence[int],
    group_size: int,
    sampling: SamplingParams,
    group_offset: int = 0,
    options: Sequence[dict | None] | None = None,
) -> list[EpisodeRecord]:
    """Play one batch: env j of the pool belongs to group `group_offset + j // G` and resets
    with that group's seed; episode ids are `group_offset * G + j`. Turns run until every env
    is done (the env truncates at its max_steps)."""
    n = len(group_seeds) * group_size
    if pool.num_envs != n:
        raise ConfigError(f"pool has {pool.num_envs} envs but {len(group_seeds)} groups x {group_size} need {n}")
    seeds = [int(group_seeds[j // group_size]) for j in range(n)]
    groups = [group_offset + j // group_size for j in range(n)]
    return run_episodes(
        pool, engine_policy(engine, sampling), seeds, options=options, groups=groups, first_episode=group_offset * group_size
    )
