"""Batched sampling from a transformers causal LM with one random generator per sequence.

`transformers.generate` samples a whole batch from one RNG, so a sequence's tokens would depend
on which other sequences share its batch. The leaderboard seeds each episode by its index and
promises the same episode files for any batch size; here every sequence draws from its own
`torch.Generator`, so sequence i's tokens depend only on its prompt, its generator and the
model. (Left padding changes the shapes of the matrix products, which can move logits in the
last bits; a sampled token changes only if its uniform draw falls within that distance of a
bucket edge.)

The logits pass through the same warpers, in the same order, as `generate(do_sample=True)`
applies for `temperature`, `top_k`, `top_p`: divide by the temperature, keep the k largest
(ties at the k-th value kept), keep the smallest set of tokens whose probability reaches top_p
(at least one). Temperature 0 is greedy (argmax).
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

from arlarena_envs.contract import SamplingParams


def warp_logits(logits: Any, sampling: SamplingParams) -> Any:
    """Logits (B, V) -> logits with the tokens that cannot be sampled set to -inf.

    z = logits / T; top-k: z_v = -inf where z_v < (k-th largest z); top-p: with z sorted
    ascending and c = cumsum(softmax(z)), z_v = -inf where c_v <= 1 - top_p (the largest kept)."""
    import torch

    z = logits / sampling.temperature
    k = sampling.top_k
    if k > 0:
        k = min(k, z.shape[-1])
        kth = torch.topk(z, k, dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if sampling.top_p < 1.0:
        asc, order = torch.sort(z, dim=-1, descending=False)
        cum = asc.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cum <= (1 - sampling.top_p)
        drop_sorted[..., -1:] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        z = z.masked_fill(drop, float("-inf"))
    return z


def next_tokens(logits: Any, sampling: SamplingParams, generators: Sequence[Any], rows: Sequence[int], fill: int) -> Any:
    """One token per row: argmax at temperature 0, else a draw from softmax(warp_logits(row))
    with that row's generator, for `rows` only; the others get `fill` and leave their generator
    untouched (a finished response must not advance its episode's stream: alone it would not)."""
    import torch

    if sampling.temperature <= 0:
        tok = logits.argmax(dim=-1)
    else:
        tok = torch.full((logits.shape[0],), fill, dtype=torch.long, device=logits.device)
        if rows:
            idx = torch.tensor(list(rows), device=logits.device)
            probs = warp_logits(logits[idx].float(), sampling).softmax(dim=-1)
            for j, i in enumerate(rows):
                tok[i] = torch.multinomial(probs[j], 1, generator=generators[i])[0]
    return tok


def _cache_of(output: Any) -> Any:
    got = getattr(output, "cache", None)
    return got if got is not None else output.past_key_values


def sample_batch(model: Any, prompts: Sequence[Sequence[int]], generators: Sequence[Any], sampling: SamplingParams,
                 eos_ids: Sequence[int], pad_id: int) -> list[list[int]]:
    """Response token ids for each prompt (left-padded into one batch, KV cache, one generator
    per row); a response ends after its first EOS token (kept) or at `max_new_tokens`."""
    import torch

    if len(prompts) != len(generators):
        raise ValueError(f"{len(prompts)} prompts but {len(generators)} generators")
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    # positions count real tokens only, as generate() derives them from the attention mask
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    eos = set(int(e) for e in eos_ids)
    # transformers 5.x names the KV cache `cache` (argument and output); 4.x `past_key_values`
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out: list[list[int]] = [[] for _ in prompts]
    open_rows = set(range(len(prompts)))
    with torch.no_grad():
        step = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        cache, nxt_pos = _cache_of(step), pos[:, -1:] + 1
        for n in range(sampling.max_new_tokens):
            tok = next_tokens(step.logits[:, -1, :], sampling, generators, sorted(open_rows), pad_id)
            for i in sorted(open_rows):
                t = int(tok[i])
                out[i].append(t)
                if t in eos:
                    open_rows.discard(i)
            if not open_rows or n + 1 == sampling.max_new_tokens:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            step = model(input_ids=tok[:, None], attention_mask=mask, position_ids=nxt_pos, use_cache=True, **{cache_arg: cache})
            cache, nxt_pos = _cache_of(step), nxt_pos + 1
    return out
