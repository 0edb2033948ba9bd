"""BM25 product search: bm25s (Lucene variant, k1=0.9, b=0.4 as the original's pyserini index).

Documents are the original's index text: `' '.join([Title, Description, BulletPoints[0],
option_text]).lower()` with `option_text = ', and '.join(f'{name}: {", ".join(values)}')`.
Tokens: bm25s's token pattern (words of 2+ characters), its English stop words (Lucene's
33-word English set), Snowball English stemmer (PyStemmer); the original used Lucene's analyzer (Porter stemmer), so rankings are
close but not identical. Only documents sharing a term with the query are returned (as
Lucene), ordered by score, ties by ascending document index: results are deterministic.

The index is built once per catalogue and shared read-only by every env of the process;
query results are cached (LRU, bounded by count and bytes: `RESULT_CACHE_*`) because training
sessions repeat queries; stems are cached per word (bounded by bytes: `STEM_CACHE_BYTES`).
"""

from __future__ import annotations

import re
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from arlarena_envs.lru import ByteLRU, text_bytes

SEARCH_RETURN_N = 50  # the original's top-n
K1, B = 0.9, 0.4
RESULT_CACHE_ITEMS, RESULT_CACHE_BYTES = 4096, 16 << 20
STEM_CACHE_BYTES = 16 << 20
_WORD = re.compile(r"(?u)\b\w\w+\b")  # bm25s.tokenize's default token_pattern


def index_text(product: Mapping[str, Any]) -> str:
    """The original's document text for one product (lower case)."""
    option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in product["options"].items())
    bullets = product["BulletPoints"]
    return " ".join([product["Title"], product["Description"], bullets[0] if bullets else "", option_text]).lower()


class SearchIndex:
    """A read-only BM25 index over documents; `search(query)` -> document indices."""

    def __init__(self, docs: Sequence[str]):
        import bm25s
        import Stemmer
        from bm25s.stopwords import STOPWORDS_EN

        self._stop = frozenset(STOPWORDS_EN)
        self._stemmer = Stemmer.Stemmer("english")
        self._stems: dict[str, str] = {}
        self._stem_bytes = 0
        self._lock = threading.Lock()  # guards the stem cache and the (C) stemmer
        self._retriever = bm25s.BM25(method="lucene", k1=K1, b=B)
        self._retriever.index([self._tokens(d) for d in docs], show_progress=False)
        self._results: ByteLRU[tuple[str, int], tuple[int, ...]] = ByteLRU(
            RESULT_CACHE_ITEMS, RESULT_CACHE_BYTES, lambda key, hits: text_bytes(key[0]) + 64 + 8 * len(hits)
        )

    def search(self, query: str, k: int = SEARCH_RETURN_N) -> tuple[int, ...]:
        """`_search`, cached (bounded by count and bytes)."""
        return self._results.get_or_compute((query, k), lambda: self._search(query, k))

    def _tokens(self, text: str) -> list[str]:
        """lower case -> words of 2+ characters -> drop stop words -> stem (cached per word)."""
        words = [w for w in _WORD.findall(text.lower()) if w not in self._stop]
        with self._lock:
            missing = [w for w in set(words) if w not in self._stems]
            if missing:
                new = dict(zip(missing, self._stemmer.stemWords(missing)))
                out = [new[w] if w in new else self._stems[w] for w in words]
                added = sum(text_bytes(w) + text_bytes(st) + 64 for w, st in new.items())
                if self._stem_bytes + added > STEM_CACHE_BYTES:  # unbounded query vocabularies
                    self._stems.clear()
                    self._stem_bytes = 0
                if added <= STEM_CACHE_BYTES:  # one text larger than the whole budget is not cached
                    self._stems.update(new)
                    self._stem_bytes += added
                return out
            return [self._stems[w] for w in words]

    def _search(self, query: str, k: int = SEARCH_RETURN_N) -> tuple[int, ...]:
        """Indices of the top-k documents with a positive score (score desc, index asc)."""
        tokens = self._tokens(query)
        if not tokens:
            return ()
        scores = np.asarray(self._retriever.get_scores(tokens), dtype=np.float64)
        hits = np.flatnonzero(scores > 0)
        if hits.size == 0:
            return ()
        order = np.lexsort((hits, -scores[hits]))[:k]
        return tuple(int(i) for i in hits[order])
