"""What the update sees: log-probs against the behaviour (sampling) distribution, and rows
shuffled across mini-batches."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from arlarena_baselines.config import load_config  # noqa: E402
from arlarena_baselines.rollout import Sample  # noqa: E402
from arlarena_baselines.tiny import build_tiny_model, train_tokenizer  # noqa: E402
from arlarena_baselines.train import Trainer  # noqa: E402

TINY = ["model.tiny={hidden_size: 32, num_layers: 1, num_heads: 2, vocab_size: 300, tokenizer_episodes: 1}",
        "trainer.progress=false", "monitor.enable=false"]


def _trainer(tmp_path, extra=()):
    return Trainer(load_config("demo_cpu", TINY + list(extra)), run_dir=tmp_path / "run")


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_scored_logprobs_equal_the_sampling_distribution(tmp_path, temperature):
    tr = _trainer(tmp_path, [f"rollout.sampling.temperature={temperature}"])
    tok = train_tokenizer(["<think>up</think><action>up</action>", "#\t_\tP\t\n#\tX\tO\t\n"] * 4, vocab_size=300)
    model = build_tiny_model(len(tok), 32, 1, 2, seed=3, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id).eval()
    tr.tok = tok
    prompt = tok("#\t_\tP\t\n#\tX\tO\t\n", add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    out = model.generate(
        input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long), do_sample=True,
        temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=6, output_scores=True,
        return_dict_in_generate=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )
    resp = out.sequences[0, len(prompt):].tolist()
    # what generate sampled from: the processed scores (logits / temperature)
    expected = torch.stack([torch.log_softmax(s[0].float(), -1)[t] for s, t in zip(out.scores, resp)])
    row = Sample(0, 0, 0, "", prompt, resp, "", "", "", "ok", True, True, 0.0, 0.0, False)
    with torch.no_grad():
        logp, _ = tr._forward(model, [row], len(resp), False, tr.cfg.rollout.sampling.temperature)
    assert torch.allclose(logp[0], expected, atol=1e-5)
    if temperature != 1.0:  # the untempered scores differ: that was the old, off-behaviour ratio
        with torch.no_grad():
            raw, _ = tr._forward(model, [row], len(resp), False, 1.0)
        assert not torch.allclose(raw[0], expected, atol=1e-3)


def test_minibatch_order_is_a_seeded_permutation(tmp_path):
    tr = _trainer(tmp_path)
    a = tr.minibatch_order(50, step=3, epoch=0)
    assert sorted(a) == list(range(50)) and a != list(range(50))
    assert a == tr.minibatch_order(50, step=3, epoch=0)
    assert a != tr.minibatch_order(50, step=4, epoch=0)
    assert a != tr.minibatch_order(50, step=3, epoch=1)
    other_seed = _trainer(tmp_path / "b", ["trainer.seed=1"])
    assert a != other_seed.minibatch_order(50, step=3, epoch=0)
    off = _trainer(tmp_path / "c", ["trainer.shuffle_minibatches=false"])
    assert off.minibatch_order(50, step=3, epoch=0) == list(range(50))
