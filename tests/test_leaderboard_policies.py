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
from arlarena_envs.leaderboard import PolicyError, episode_files_without_timing, evaluate
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


def test_warp_logits_matches_transformers_warpers():
    """Temperature, top-k (ties kept) and top-p as transformers' own warpers compute them."""
    import torch
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from arlarena_envs.leaderboard.hf_sampling import warp_logits

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=g) * 3
    logits[0, :5] = 7.0  # ties at the top-k threshold
    logits[1] = 0.0  # a flat row
    for t, k, p in [(0.6, 20, 0.95), (1.0, 3, 1.0), (0.3, 0, 0.5), (1.7, -1, 0.9), (0.6, 100, 0.95)]:
        ref = TemperatureLogitsWarper(t)(None, logits.clone())
        if k > 0:
            ref = TopKLogitsWarper(k)(None, ref)
        if p < 1.0:
            ref = TopPLogitsWarper(p)(None, ref)
        ours = warp_logits(logits, SamplingParams(temperature=t, top_k=k, top_p=p))
        assert torch.equal(torch.isinf(ours), torch.isinf(ref)), (t, k, p)
        assert torch.allclose(ours[~torch.isinf(ours)], ref[~torch.isinf(ref)]), (t, k, p)


@pytest.mark.slow
def test_sample_batch_greedy_equals_generate_and_rows_do_not_depend_on_the_batch(tiny_hf_model):
    """The decode loop (left padding, positions from the mask, KV cache) gives generate()'s
    greedy tokens; sampled rows are the same alone or in a batch of prompts of other lengths."""
    import torch

    from arlarena_envs.leaderboard.hf_sampling import sample_batch
    from arlarena_envs.leaderboard.policies import make_policy

    spec = get_spec(SOKO)
    pol = make_policy(f"hf:{tiny_hf_model}", spec, SamplingParams(temperature=0.0, max_new_tokens=12))
    prompts = [pol.encode(x) for x in ("a short prompt", "# _ O X P\n" * 9 + "push the box", "<action>up</action> left")]
    assert len({len(p) for p in prompts}) == 3
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    eos, pad = pol.eos_ids, pol.tokenizer.pad_token_id
    batch = sample_batch(pol.model, prompts, [None] * 3, greedy, eos, pad)
    for p, row in zip(prompts, batch):
        ids = torch.tensor([p])
        ref = pol.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12, pad_token_id=pad)
        ref_row = ref[0, len(p):].tolist()
        if eos[0] in ref_row:
            ref_row = ref_row[: ref_row.index(eos[0]) + 1]
        assert row == ref_row
    samp = SamplingParams(temperature=1.0, top_p=0.95, top_k=50, max_new_tokens=12)
    for p, seed in zip(prompts, (11, 12, 13)):  # one sequence: generate()'s own draws from the global RNG seeded alike
        ids = torch.tensor([p])
        torch.manual_seed(seed)
        ref = pol.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_p=0.95, top_k=50,
                                 max_new_tokens=12, pad_token_id=pad)[0, len(p):].tolist()
        if eos[0] in ref:
            ref = ref[: ref.index(eos[0]) + 1]
        assert sample_batch(pol.model, [p], [torch.Generator().manual_seed(seed)], samp, eos, pad)[0] == ref
    gens = lambda: [torch.Generator().manual_seed(s) for s in (11, 12, 13)]  # noqa: E731
    together = sample_batch(pol.model, prompts, gens(), samp, eos, pad)
    alone = [sample_batch(pol.model, [p], [g], samp, eos, pad)[0] for p, g in zip(prompts, gens())]
    assert together == alone and len({tuple(r) for r in together}) == 3


def test_finished_rows_do_not_draw_from_their_generator():
    """A response that ended (EOS) gets filler tokens while the batch goes on; its episode's
    generator must not advance, or its next turn would differ from playing it alone."""
    import torch

    from arlarena_envs.leaderboard.hf_sampling import next_tokens

    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    before = [g.get_state() for g in gens]
    tok = next_tokens(torch.randn(3, 40), SamplingParams(temperature=1.0, top_k=-1, top_p=1.0), gens, [0, 2], fill=-7)
    assert int(tok[1]) == -7 and 0 <= int(tok[0]) < 40 and 0 <= int(tok[2]) < 40
    assert torch.equal(gens[1].get_state(), before[1])
    assert not torch.equal(gens[0].get_state(), before[0]) and not torch.equal(gens[2].get_state(), before[2])


@pytest.mark.slow
def test_trained_policy_in_batches_plays_the_episodes_it_plays_alone(tmp_path):
    """The committed trained policy (real EOS endings of different lengths in one batch)."""
    from pathlib import Path

    policy = Path(__file__).resolve().parents[1] / "results/runs/sampo-sokoban-gain-s0/policy"
    if not (policy / "config.json").exists():
        pytest.skip(f"no committed trained policy at {policy}")
    files = {}
    for b in (1, 4):
        evaluate(SOKO, f"hf:{policy}", episodes=12, max_steps=20, out_dir=tmp_path / str(b), batch_size=b)
        files[b] = episode_files_without_timing(tmp_path / str(b))
    assert len(files[1]) == 12 and files[1] == files[4]
    lengths = {len(t["response"]) for d in files[1].values() for t in d["turns"]}
    assert len(lengths) > 1  # responses of different lengths shared batches


@pytest.mark.slow
def test_hf_evaluate_in_batches_writes_the_files_of_serial_play(tiny_hf_model, tmp_path):
    spec = get_spec(SOKO)
    samp = SamplingParams(temperature=1.0, top_p=0.95, top_k=50, max_new_tokens=8)
    from arlarena_envs.leaderboard.policies import make_policy

    files = {}
    for b in (1, 3, 8):
        pol = make_policy(f"hf:{tiny_hf_model}", spec, samp)
        row = evaluate(SOKO, pol, episodes=5, max_steps=3, sampling=samp, out_dir=tmp_path / str(b), batch_size=b, samples_per_task=2)
        files[b] = (episode_files_without_timing(tmp_path / str(b)), row.result_dump())
    assert len(files[1][0]) == 10
    assert files[1] == files[3] == files[8]
    responses = [t["response"] for d in files[1][0].values() for t in d["turns"]]
    assert len(set(responses)) > 1  # it really sampled


def test_openai_evaluate_in_batches_sends_concurrent_requests_with_per_episode_seeds(fake_server, tmp_path):
    port = fake_server()
    policy = f"openai:m@http://127.0.0.1:{port}/v1"
    serial = evaluate(SOKO, policy, episodes=4, max_steps=4, out_dir=tmp_path / "serial")
    seeds_serial = sorted(b["seed"] for b in _requests(port))
    batched = evaluate(SOKO, policy, episodes=4, max_steps=4, out_dir=tmp_path / "b", batch_size=4)
    assert sorted(b["seed"] for b in _requests(port)[len(seeds_serial):]) == seeds_serial
    assert len(seeds_serial) == 16 and len(set(seeds_serial)) == 16  # 4 episodes x 4 turns, one seed each
    figures = lambda r: {k: v for k, v in r.result_dump().items() if k != "provenance"}  # noqa: E731
    assert figures(batched) == figures(serial)
    assert {k: {**v, "turns": [{**t, "prompt": None} for t in v["turns"]]} for k, v in episode_files_without_timing(tmp_path / "b").items()} == \
        {k: {**v, "turns": [{**t, "prompt": None} for t in v["turns"]]} for k, v in episode_files_without_timing(tmp_path / "serial").items()}


def test_batch_size_is_for_model_policies(tmp_path):
    from arlarena_envs.errors import ConfigError

    with pytest.raises(ConfigError, match="one episode at a time"):
        evaluate(SOKO, "random", episodes=2, out_dir=tmp_path, batch_size=2)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        evaluate(SOKO, "oracle", episodes=2, out_dir=tmp_path, batch_size=0)
