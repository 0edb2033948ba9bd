"""Model policies: an OpenAI-compatible endpoint (a fake server the tests start on loopback)
and a local Hugging Face model (a tiny random Llama built in the test)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request

import pytest

from arlarena_envs.contract import SamplingParams
from arlarena_envs.leaderboard import PolicyError, evaluate
from arlarena_envs.leaderboard.models import EpisodeResult
from arlarena_envs.registry import get_spec

SOKO = "arlarena/Sokoban-v0"


def _start(mode: str):
    proc = subprocess.Popen(
        [sys.executable, "-m", "arlarena_envs.leaderboard.fake_openai", "--port", "0", "--mode", mode],
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"fake server did not start: {line!r}")
    return proc, int(line.split()[1])


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture()
def fake_server():
    servers = []

    def start(mode="first"):
        proc, port = _start(mode)
        servers.append(proc)
        return port

    yield start
    for p in servers:
        _stop(p)


def _requests(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/requests", timeout=5) as r:
        return json.loads(r.read())


def test_openai_policy_sends_the_env_prompt_with_the_spec_sampling(fake_server, tmp_path):
    port = fake_server()
    policy = f"openai:fake-model@http://127.0.0.1:{port}/v1"
    row = evaluate(SOKO, policy, episodes=2, max_steps=4, out_dir=tmp_path, keep_prompts=True)
    assert row.policy_kind == "openai" and row.parse_rates["ok"] == 1.0
    assert row.provenance.policy == {"kind": "openai", "spec": policy, "model": "fake-model", "base_url": f"http://127.0.0.1:{port}/v1"}
    reqs = _requests(port)
    sampling = get_spec(SOKO).leaderboard.sampling
    assert len(reqs) == 2 * row.steps.mean
    files = sorted((tmp_path / "Sokoban-v0").glob("*/episodes/ep_*.json"))
    prompts = [t.prompt for f in files for t in EpisodeResult.model_validate_json(f.read_text()).turns]
    for body, prompt in zip(reqs, prompts):
        assert body["model"] == "fake-model"
        assert body["messages"] == [{"role": "user", "content": prompt}]
        assert "Sokoban" in prompt and "Your admissible actions" in prompt
        assert (body["temperature"], body["top_p"], body["max_tokens"], body["top_k"]) == (
            sampling.temperature, sampling.top_p, sampling.max_new_tokens, sampling.top_k,
        )


def test_openai_policy_parse_failures_are_counted(fake_server, tmp_path):
    port = fake_server("mixed")
    row = evaluate(SOKO, f"openai:m@http://127.0.0.1:{port}/v1", episodes=2, max_steps=6, out_dir=tmp_path)
    assert row.parse_rates["no_tag"] == pytest.approx(0.5) and row.parse_rates["ok"] == pytest.approx(0.5)


def test_openai_endpoint_down_is_a_policy_error(tmp_path):
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PolicyError, match="endpoint failed"):
        evaluate(SOKO, f"openai:m@http://127.0.0.1:{port}/v1", episodes=1, max_steps=2, out_dir=tmp_path)


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<eos>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["<think>push the box</think><action>up</action>", "down left right # _ O X P"], trainer)
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    hf_tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(hf_tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=4096, eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id,
    )
    model = transformers.LlamaForCausalLM(cfg)
    path = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


@pytest.mark.slow
def test_hf_policy_uses_the_chat_template_and_is_seeded(tiny_hf_model, tmp_path):
    from arlarena_envs.leaderboard.policies import make_policy

    spec = get_spec(SOKO)
    samp = SamplingParams(temperature=0.6, top_p=0.95, top_k=20, max_new_tokens=6)
    pol = make_policy(f"hf:{tiny_hf_model}", spec, samp)
    ids = pol.encode("PROMPT TEXT")
    assert pol.tokenizer.decode(ids).startswith("<|user|>PROMPT TEXT") and pol.tokenizer.decode(ids).endswith("<|assistant|>")
    rows = [
        evaluate(SOKO, pol, episodes=2, max_steps=3, sampling=samp, out_dir=tmp_path / str(i), checkpoint_rule="final")
        for i in range(2)
    ]
    assert rows[0].result_dump() == rows[1].result_dump()
    r = rows[0]
    assert r.policy_kind == "hf" and r.provenance.checkpoint_rule == "final"
    assert r.provenance.overrides["sampling"]["max_new_tokens"] == 6 and r.provenance.sampling == samp
    assert r.steps.mean <= 3 and sum(r.parse_rates.values()) == pytest.approx(1.0)
    turns = [
        [t.response for t in EpisodeResult.model_validate_json(f.read_text()).turns]
        for i in range(2)
        for f in sorted((tmp_path / str(i) / "Sokoban-v0").glob("*/episodes/ep_*.json"))
    ]
    assert turns[:2] == turns[2:]  # same seeds -> same samples
    assert all(isinstance(x, str) for t in turns for x in t)
