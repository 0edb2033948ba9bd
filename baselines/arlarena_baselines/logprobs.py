"""Per-token log-probs (and entropies) of responses under a causal LM.

A row is (prompt ids, response ids); the output is (b, T), right-padded to T = the batch's
longest response. Only the response positions go through the LM head (cheaper than full
logits when the model exposes its base model and head)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from arlarena_baselines.losses import entropy_from_logits

Rows = Sequence[tuple[list[int], list[int]]]


def response_logprobs(
    model: Any, rows: Rows, width: int, pad_id: int, device: torch.device, need_entropy: bool, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(y_t | x, y_<t) of each row's response tokens, (b, width), with grad; and the token
    entropies H_t = logsumexp(z) − Σ softmax(z)·z when `need_entropy`; z = logits / temperature.
    With the rollout temperature this is the distribution the tokens were sampled from (as
    verl's actor and reference compute it), so an importance ratio is against the behaviour
    policy; temperature 1 (or 0, greedy rollouts) scores the raw logits (BC)."""
    seqs = [p + r for p, r in rows]
    longest = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad_id] * (longest - len(s)) for s in seqs], device=device)
    attn = torch.tensor([[1] * len(s) + [0] * (longest - len(s)) for s in seqs], device=device)
    pos = torch.zeros(len(rows), width, dtype=torch.long)
    tgt = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (p_ids, r_ids) in enumerate(rows):
        n = len(r_ids)
        if n:  # the logits at position t predict token t + 1
            pos[i, :n] = torch.arange(len(p_ids) - 1, len(p_ids) - 1 + n)
            tgt[i, :n] = torch.tensor(r_ids)
    pos, tgt = pos.to(device), tgt.to(device)
    head = model.get_output_embeddings()
    base = getattr(model, model.base_model_prefix, None) if head is not None else None
    if base is not None:
        hidden = base(input_ids=ids, attention_mask=attn).last_hidden_state
        sel = head(hidden.gather(1, pos.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))).float()
    else:
        logits = model(input_ids=ids, attention_mask=attn).logits
        sel = logits.gather(1, pos.unsqueeze(-1).expand(-1, -1, logits.shape[-1])).float()
    if temperature > 0 and temperature != 1.0:
        sel = sel / temperature
    logp = torch.log_softmax(sel, dim=-1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return logp, (entropy_from_logits(sel) if need_entropy else None)


def logprobs_no_grad(
    model: Any, rows: Rows, width: int, pad_id: int, device: torch.device, micro_batch: int, need_entropy: bool,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`response_logprobs` in eval mode without grad, `micro_batch` rows at a time (the old
    and reference log-probs of an update)."""
    lps, ents = [], []
    was = model.training
    model.eval()
    with torch.no_grad():
        for s in range(0, len(rows), micro_batch):
            lp, en = response_logprobs(model, rows[s : s + micro_batch], width, pad_id, device, need_entropy, temperature)
            lps.append(lp)
            if en is not None:
                ents.append(en)
    model.train(was)
    return torch.cat(lps), (torch.cat(ents) if ents else None)
