"""Leaderboard policies, built from a spec string:

    random            uniform over the admissible actions (seeded per episode)
    oracle            the env's expert (`env.oracle_action()`)
    hf:/path/to/model a local Hugging Face causal LM (transformers): chat template, sampling
    openai:MODEL@URL  any OpenAI-compatible chat endpoint (vLLM, ...), e.g.
                      openai:Qwen/Qwen3-4B@http://127.0.0.1:8000/v1 (key: $OPENAI_API_KEY, else "EMPTY")

Every policy maps (observation, env) to the raw text sent to `env.step`. Model policies send
the env's own prompt (`env.prompt()`: the spec's template and history length) as one user
message and sample with the spec's `leaderboard.sampling`; random/oracle answer in the paper's
`<think></think><action>..</action>` format (bare actions where the protocol is "bare").
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from arlarena_envs.contract import EnvSpec, Observation, SamplingParams
from arlarena_envs.errors import ArlArenaError, ConfigError, MissingDependencyError
from arlarena_envs.policies import OraclePolicy, RandomPolicy, wrap_tagged


class PolicyError(ArlArenaError, RuntimeError):
    """A policy failed to produce a response (model endpoint error, missing oracle...)."""


class LeaderboardPolicy:
    """Base class: `spec` (the string it was built from), `kind`, `reset`, `act`, `describe`."""

    kind: str = ""

    def __init__(self, spec: str):
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec

    # True where `start` / `respond` answer many episodes' prompts at once (model policies)
    batchable: bool = False

    def reset(self, seed: int) -> None:
        """Start an episode; `seed` makes sampling reproducible where the backend allows it."""

    def act(self, observation: Observation, env: Any) -> str:
        raise NotImplementedError

    def start(self, seeds: Sequence[int]) -> None:
        """Start several episodes at once (batched play): `reset` for each seed."""
        raise ConfigError(f"{self.kind} policies play one episode at a time (random / oracle: use workers)")

    def respond(self, seeds: Sequence[int], prompts: Sequence[str]) -> list[str]:
        """One response per (episode seed, prompt): the next turn of each started episode. An
        episode's responses depend on its seed and prompts only, not on the others in the call."""
        raise ConfigError(f"{self.kind} policies play one episode at a time (random / oracle: use workers)")

    def describe(self) -> dict[str, Any]:
        """Provenance of the policy (model path, endpoint, ...) for the result row."""
        return {"kind": self.kind, "spec": self.spec}

    def close(self) -> None:
        pass


class _Bare(LeaderboardPolicy):
    def __init__(self, spec: str, inner: Any, tagged: bool):
        super().__init__(spec)
        self.inner, self.tagged = inner, tagged

    def reset(self, seed: int) -> None:
        self.inner.reset(seed)

    def act(self, observation: Observation, env: Any) -> str:
        action = self.inner.act(observation, env)
        return wrap_tagged(action) if self.tagged else action


class RandomLeaderboardPolicy(_Bare):
    kind = "random"

    def __init__(self, spec: str, tagged: bool):
        super().__init__(spec, RandomPolicy(seed=0), tagged)


class OracleLeaderboardPolicy(_Bare):
    kind = "oracle"

    def __init__(self, spec: str, tagged: bool):
        super().__init__(spec, OraclePolicy(), tagged)

    def act(self, observation: Observation, env: Any) -> str:
        try:
            return super().act(observation, env)
        except ArlArenaError as e:
            raise PolicyError(f"oracle: {e}") from e


def chat_messages(prompt: str) -> list[dict[str, str]]:
    """One turn = one independent prompt (the paper's agent loop): a single user message."""
    return [{"role": "user", "content": prompt}]


def load_tokenizer(path: str, auto: Any) -> Any:
    """The tokenizer of a local model folder. A generic fast tokenizer (tokenizer_class
    PreTrainedTokenizerFast / TokenizersBackend, as the trainer's tiny models save) is loaded as
    such: AutoTokenizer would pick the model type's tokenizer class (qwen2 -> Qwen2Tokenizer) and
    replace the saved pre-tokenizer with that family's, so prompts would tokenize differently
    from training."""
    import json

    from transformers import PreTrainedTokenizerFast

    cfg = os.path.join(path, "tokenizer_config.json")
    cls = ""
    if os.path.exists(cfg):
        with open(cfg, encoding="utf-8") as f:
            cls = json.load(f).get("tokenizer_class", "") or ""
    if cls in ("TokenizersBackend", "PreTrainedTokenizerFast") and os.path.exists(os.path.join(path, "tokenizer.json")):
        return PreTrainedTokenizerFast.from_pretrained(path)
    return auto.from_pretrained(path)


class HFPolicy(LeaderboardPolicy):
    """A local transformers causal LM; the prompt goes through the tokenizer's chat template.
    Episodes can be played in batches (`respond`): each samples from its own generator
    (hf_sampling.py), so a batch gives each episode the tokens it gets alone."""

    kind = "hf"
    batchable = True

    def __init__(self, spec: str, path: str, sampling: SamplingParams, device: str | None = None):
        super().__init__(spec)
        if not os.path.isdir(path):
            raise ConfigError(f"hf:{path}: no such model directory (a save_pretrained folder is needed)")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise MissingDependencyError(f"hf: policies need torch and transformers: pip install 'arlarena-envs[train]' ({e})") from e
        self.torch = torch
        self.path = path
        self.sampling = sampling
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = load_tokenizer(path, AutoTokenizer)
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self._generators: dict[int, Any] = {}
        self._current = 0

    def reset(self, seed: int) -> None:
        self.start([seed])
        self._current = int(seed)

    def start(self, seeds: Sequence[int]) -> None:
        # one generator per episode, seeded by its index: its samples do not depend on the batch
        self._generators = {int(s): self.torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds}

    def encode(self, prompt: str) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(chat_messages(prompt), add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer transformers
                ids = ids["input_ids"]
            return list(ids)
        return tok(prompt)["input_ids"]

    def act(self, observation: Observation, env: Any) -> str:
        return self.respond([self._current], [env.prompt()])[0]

    def respond(self, seeds: Sequence[int], prompts: Sequence[str]) -> list[str]:
        from arlarena_envs.leaderboard.hf_sampling import sample_batch

        try:
            gens = [self._generators[int(s)] for s in seeds]
        except KeyError as e:
            raise PolicyError(f"{self.spec}: episode {e.args[0]} was not started (call start/reset first)") from None
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        rows = sample_batch(self.model, [self.encode(p) for p in prompts], gens, self.sampling, self.eos_ids, pad)
        return [tok.decode(r, skip_special_tokens=True) for r in rows]

    @property
    def eos_ids(self) -> list[int]:
        """The model's end-of-sequence ids (its generation config, as `generate` reads them), else the tokenizer's."""
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]

    def describe(self) -> dict[str, Any]:
        # the path as given (relative to where `evaluate` ran): an absolute path would name this machine
        return {"kind": self.kind, "spec": self.spec, "model_path": self.path, "device": self.device}


class OpenAIPolicy(LeaderboardPolicy):
    """Any OpenAI-compatible chat completions endpoint (the official `openai` client)."""

    kind = "openai"
    batchable = True
    max_concurrency = 64  # requests in flight at once in a batched `respond`

    def __init__(self, spec: str, model: str, base_url: str, sampling: SamplingParams, timeout: float = 120.0):
        super().__init__(spec)
        try:
            import openai
        except ImportError as e:
            raise MissingDependencyError(f"openai: policies need the openai client: pip install 'arlarena-envs[eval]' ({e})") from e
        self.openai = openai
        self.model, self.base_url, self.sampling = model, base_url, sampling
        self.client = openai.OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"), timeout=timeout, max_retries=2)
        self._turns: dict[int, int] = {}
        self._current = 0

    def reset(self, seed: int) -> None:
        self.start([seed])
        self._current = int(seed)

    def start(self, seeds: Sequence[int]) -> None:
        self._turns = {int(s): 0 for s in seeds}

    def act(self, observation: Observation, env: Any) -> str:
        return self.respond([self._current], [env.prompt()])[0]

    def respond(self, seeds: Sequence[int], prompts: Sequence[str]) -> list[str]:
        """The requests go out concurrently (an engine like vLLM batches them as they come);
        each carries its episode's seed and turn, so the answers do not depend on the batch."""
        calls = []
        for s in seeds:
            if int(s) not in self._turns:
                raise PolicyError(f"{self.spec}: episode {s} was not started (call start/reset first)")
            self._turns[int(s)] += 1
            calls.append(int(s) * 1000 + self._turns[int(s)])
        if len(prompts) == 1:
            return [self._complete(prompts[0], calls[0])]
        with ThreadPoolExecutor(max_workers=min(len(prompts), self.max_concurrency)) as ex:
            return list(ex.map(self._complete, prompts, calls))

    def _complete(self, prompt: str, seed: int) -> str:
        s = self.sampling
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=chat_messages(prompt),  # type: ignore[arg-type]
                temperature=s.temperature,
                top_p=s.top_p,
                max_tokens=s.max_new_tokens,
                seed=seed,
                extra_body={"top_k": s.top_k},  # vLLM / SGLang accept top_k here
            )
        except self.openai.OpenAIError as e:
            raise PolicyError(f"{self.spec}: the endpoint failed: {e}") from e
        if not resp.choices:
            raise PolicyError(f"{self.spec}: the endpoint returned no choices")
        return resp.choices[0].message.content or ""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.spec, "model": self.model, "base_url": self.base_url}

    def close(self) -> None:
        self.client.close()


_OPENAI = re.compile(r"^openai:(?P<model>[^@]+)@(?P<url>https?://\S+)$")


def make_policy(spec: str, env_spec: EnvSpec, sampling: SamplingParams | None = None) -> LeaderboardPolicy:
    """Build a policy from its spec string for one env (see the module docstring)."""
    if sampling is None:
        sampling = env_spec.leaderboard.sampling if env_spec.leaderboard else SamplingParams()
    tagged = env_spec.protocol.action_format != "bare"
    if spec == "random":
        return RandomLeaderboardPolicy(spec, tagged)
    if spec == "oracle":
        return OracleLeaderboardPolicy(spec, tagged)
    if spec.startswith("hf:"):
        return HFPolicy(spec, spec[3:], sampling)
    m = _OPENAI.match(spec)
    if m:
        return OpenAIPolicy(spec, m["model"], m["url"], sampling)
    raise ConfigError(
        f"unknown policy {spec!r}; use random, oracle, hf:/path/to/model or openai:MODEL@http://HOST:PORT/v1"
    )
