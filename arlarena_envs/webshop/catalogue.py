"""A WebShop catalogue: cleaned products, goals in their fixed order, prices, nouns, search index.

One `Catalogue` per data source and process (`get_catalogue` caches it by identity): every env
session of the process shares the products and the BM25 index read-only, so 64 sessions cost
little more memory than one.

Goal k of a catalogue is the original's goal k: goals are built from the products, then shuffled
with `random.Random(233)` (the original's `random.seed(233); random.shuffle(goals)`); the test
split is goals 0-499, train the rest.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from arlarena_envs.webshop.search import SearchIndex, index_text

GOAL_SHUFFLE_SEED = 233
PRICE_RANGE = [10.0 * i for i in range(1, 100)]


def price_upper_for(price: float, rng: random.Random) -> tuple[float, str]:
    """The original's price bound: the larger of 2 samples from the first 4 multiples of 10
    above `price` (1000000 and no text if fewer than 2 exist). Returns (price_upper, text)."""
    price_range = [p for p in PRICE_RANGE if p > price][:4]
    if len(price_range) >= 2:
        _, upper = sorted(rng.sample(price_range, 2))
        return upper, f", and price lower than {upper:.2f} dollars"
    return 1000000, ""


def shuffle_goals(goals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The original's fixed goal order: random.seed(233); random.shuffle(goals)."""
    goals = list(goals)
    random.Random(GOAL_SHUFFLE_SEED).shuffle(goals)
    return goals


def checksum(obj: Any) -> str:
    """sha256 of the canonical JSON (sorted keys, compact, UTF-8) of `obj`."""
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@dataclass
class Catalogue:
    """Products (cleaned, original field names), goals (fixed order), prices and helpers."""

    name: str
    products: list[dict[str, Any]]
    goals: list[dict[str, Any]]
    prices: dict[str, float]
    noun_fn: Callable[[str], Sequence[str]] | None = None  # None: products carry `title_nouns`
    identity: str = ""
    by_asin: dict[str, int] = field(default_factory=dict)
    _index: SearchIndex | None = None
    _nouns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.by_asin = {p["asin"]: i for i, p in enumerate(self.products)}
        for p in self.products:
            if "title_nouns" in p:
                self._nouns[p["Title"]] = tuple(p["title_nouns"])

    @property
    def index(self) -> SearchIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = SearchIndex([index_text(p) for p in self.products])
        return self._index

    def product(self, asin: str) -> dict[str, Any]:
        return self.products[self.by_asin[asin]]

    def nouns(self, name: str) -> tuple[str, ...]:
        """Nouns of a product name (precomputed, or from the noun function; cached)."""
        got = self._nouns.get(name)
        if got is None:
            if self.noun_fn is None:
                from arlarena_envs.webshop.nouns import heuristic_nouns

                got = tuple(heuristic_nouns(name))
            else:
                got = tuple(self.noun_fn(name))
            self._nouns[name] = got
        return got

    def search(self, keywords: str) -> tuple[int, ...]:
        """Product indices of the top-50 BM25 hits for the query (deterministic)."""
        return self.index.search(keywords)


_CACHE: dict[tuple, Catalogue] = {}
_CACHE_LOCK = threading.Lock()


def cached(key: tuple, build: Callable[[], Catalogue]) -> Catalogue:
    """The process-wide catalogue for `key`, built once (thread-safe)."""
    got = _CACHE.get(key)
    if got is not None:
        return got
    with _CACHE_LOCK:
        got = _CACHE.get(key)
        if got is None:
            got = build()
            _CACHE[key] = got
    return got


def derived_splits(n_goals: int, test_goals: int = 500) -> dict[str, Any]:
    """The splits of a catalogue with `n_goals` goals: test = goals [0, min(test_goals, n_goals)),
    train = goals [test_goals, n_goals) (absent when the catalogue has no more goals)."""
    from arlarena_envs.contract import SplitSpec

    if n_goals < 1:
        return {}
    stop = min(test_goals, n_goals)
    out = {"test": SplitSpec(kind="tasks", start=0, stop=stop, description=f"goals 0..{stop - 1} of the fixed goal order")}
    if n_goals > test_goals:
        out["train"] = SplitSpec(kind="tasks", start=test_goals, stop=n_goals, description=f"goals {test_goals}..{n_goals - 1} of the fixed goal order")
    return out
