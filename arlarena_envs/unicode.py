"""The text rule: every string that enters ARLArena is valid Unicode that encodes to UTF-8.

Python strings may hold lone surrogates (U+D800-U+DFFF not in a pair): `json.loads('"\\ud800"')`
yields one, and such a string raises UnicodeEncodeError wherever it is encoded (hashing, logs,
the wire). Rather than teaching every encoder about them, text is normalised once, where it
enters: env actions (`TextEnv.parse_action`: str, bytes and ParsedAction fields), log lines read
by the stability evaluator, and leaderboard rows. A lone surrogate becomes U+FFFD (the
replacement character), exactly one per lone surrogate; a well-formed surrogate pair written as
two code units becomes the character it encodes. Valid text is returned unchanged (and cheaply).

`hashing.sha256_hex` additionally encodes with errors="surrogatepass" so a hash is defined for
every Python string, but nothing relies on that: the rule above is the one that is applied.
"""

from __future__ import annotations

from typing import Any


def clean_text(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD (identity on valid Unicode)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_json(value: Any) -> Any:
    """`clean_text` applied to every string (keys included) of a decoded JSON value (recursive:
    callers bound the nesting first, as the log readers do)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value
