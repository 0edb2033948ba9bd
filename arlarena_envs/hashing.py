"""Canonical hashing: state hashes for GiGPO anchors and transcript fingerprints for the checker."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Iterable

import numpy as np


def _plain(obj: Any) -> Any:
    """Convert numpy / tuples / sets into canonical JSON-able values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_plain(v) for v in obj), key=canonical_json)
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"non-finite float {obj!r} cannot be hashed canonically")
        # repr round-trips exactly; -0.0 and 0.0 hash alike on purpose
        return 0.0 if obj == 0 else obj
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "model_dump"):
        return _plain(obj.model_dump(mode="json"))
    raise TypeError(f"cannot hash a {type(obj).__name__} canonically")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text: equal values give equal strings."""
    if isinstance(obj, (list, tuple, str, int)) or (isinstance(obj, dict) and all(type(k) is str for k in obj)):
        try:  # fast path: plain JSON data (tuples serialise as lists, as _plain would make them)
            return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            pass
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of any Python string: lone surrogates (which unicode.clean_text removes at every
    boundary) still encode, as their surrogatepass bytes, so hashing never raises on text."""
    return text.encode("utf-8", "surrogatepass")


def sha256_hex(text: str | bytes) -> str:
    data = _utf8(text) if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def state_hash(state_key: Any) -> str:
    """The 32-hex-char hash of an env's true state (its `_state_key()`)."""
    return sha256_hex(canonical_json(state_key))[:32]


def transcript_hash(events: Iterable[Any]) -> str:
    """sha256 over the canonical JSON of every event of a transcript, one per line."""
    h = hashlib.sha256()
    for ev in events:
        h.update(_utf8(canonical_json(ev)))
        h.update(b"\n")
    return h.hexdigest()
