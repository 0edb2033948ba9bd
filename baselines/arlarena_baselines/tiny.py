"""A tiny causal LM and tokenizer built locally (no download): tests, the CPU demo, benchmarks.

The tokenizer is a byte-level BPE trained in a fraction of a second on the env's own prompt
text and the behaviour-cloning responses, wrapped in `PreTrainedTokenizerFast` with a chat
template; the model is a `Qwen2ForCausalLM` from a small `Qwen2Config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 1024):
    """Byte-level BPE trained on `corpus`; pad <|pad|>, eos <|im_end|>, chat template above."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Pre-split so merges never cross a tab, newline or tag start: every grid cell ("#\t")
    # stays its own token while fixed template lines compress to a few tokens, and a
    # response splits into its tags ("<think>up", "</think>", "<action>up", "</action>").
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"<[^<\t\n]*|[^<\t\n]*[\t\n]|[^<\t\n]+"), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny_model(vocab_size: int, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                     intermediate_size: int | None = None, max_position_embeddings: int = 2048, seed: int = 0,
                     pad_token_id: int = 0, eos_token_id: int = 2):
    """A randomly initialised Qwen2ForCausalLM with the given small sizes (deterministic in `seed`)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=1,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(cfg)


def load_tokenizer(path: str | Path):
    """A tokenizer from a local directory. A generic fast tokenizer (ours: tokenizer_class
    TokenizersBackend / PreTrainedTokenizerFast) is loaded as such: AutoTokenizer would map the
    model type (qwen2) to Qwen2Tokenizer and silently swap our pre-tokenizer for Qwen's."""
    import json

    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cfg_file = Path(path) / "tokenizer_config.json"
    cls = ""
    if cfg_file.exists():
        cls = json.loads(cfg_file.read_text(encoding="utf-8")).get("tokenizer_class", "") or ""
    if cls in ("TokenizersBackend", "PreTrainedTokenizerFast") and (Path(path) / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def save_policy(model, tokenizer, path: str | Path) -> Path:
    """Write a local causal-LM directory (safetensors + tokenizer) loadable by `from_pretrained`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
