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

from arlarena_envs.errors import DataError


def clean_text(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD (identity on valid Unicode)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_json(value: Any, max_depth: int = 64) -> Any:
    """`clean_text` applied to every string (keys included) of a decoded JSON value; a copy.
    Iterative, so any depth is safe to walk; deeper than `max_depth` levels of lists/dicts is a
    DataError (no boundary value of ARLArena nests that deep)."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 0)]  # (value, parent, key, depth)
    while stack:
        v, parent, key, depth = stack.pop()
        if isinstance(v, str):
            parent[key] = clean_text(v)
        elif isinstance(v, (dict, list)):
            if depth >= max_depth:
                raise DataError(f"a JSON value nested more than {max_depth} levels deep")
            if isinstance(v, dict):
                out: Any = {}
                for k, x in v.items():
                    ck = clean_text(k) if isinstance(k, str) else k
                    out[ck] = None
                    stack.append((x, out, ck, depth + 1))
            else:
                out = [None] * len(v)
                stack.extend((x, out, i, depth + 1) for i, x in enumerate(v))
            parent[key] = out
        else:
            parent[key] = v
    return root[0]
