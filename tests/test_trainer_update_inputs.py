"""What the update sees: log-probs against the behaviour (sampling) distribution, and rows
shuffled across mini-batches."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from arlarena_baselines.logprobs import response_logprobs  # noqa: E402
from arlarena_baselines.tiny import build_tiny_model, train_tokenizer  # noqa: E402
from arlarena_baselines.update import minibatch_order  # noqa: E402


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_scored_logprobs_equal_the_sampling_distribution(temperature):
    tok = train_tokenizer(["<think>up</think><action>up</action>", "#\t_\tP\t\n#\tX\tO\t\n"] * 4, vocab_size=300)
    model = build_tiny_model(len(tok), 32, 1, 2, seed=3, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id).eval()
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
    cpu = torch.device("cpu")
    with torch.no_grad():
        logp, _ = response_logprobs(model, [(prompt, resp)], len(resp), tok.pad_token_id, cpu, False, temperature)
    assert torch.allclose(logp[0], expected, atol=1e-5)
    if temperature != 1.0:  # the untempered scores differ: that was the old, off-behaviour ratio
        with torch.no_grad():
            raw, _ = response_logprobs(model, [(prompt, resp)], len(resp), tok.pad_token_id, cpu, False, 1.0)
        assert not torch.allclose(raw[0], expected, atol=1e-3)


def test_minibatch_order_is_a_seeded_permutation():
    a = minibatch_order(50, seed=0, step=3, epoch=0)
    assert sorted(a) == list(range(50)) and a != list(range(50))
    assert a == minibatch_order(50, seed=0, step=3, epoch=0)
    assert a != minibatch_order(50, seed=0, step=4, epoch=0)
    assert a != minibatch_order(50, seed=0, step=3, epoch=1)
    assert a != minibatch_order(50, seed=1, step=3, epoch=0)
    assert minibatch_order(50, seed=0, step=3, epoch=0, shuffle=False) == list(range(50))
