"""A BM25 index on disk, memory-mapped: built in bulk with numpy, searched like `SearchIndex`.

Same documents, tokens and scores as `search.SearchIndex` (bm25s, method "lucene", k1=0.9,
b=0.4), so a store's results equal the in-memory path's:

    idf(t)     = float32(log(1 + (N - df(t) + 0.5) / (df(t) + 0.5)))
    s(t, d)    = float32(idf(t) * tf / (k1 * ((1 - b) + b * |d| / avgdl) + tf))   (float64 inside)
    score(q,d) = float32 sum over the query's tokens in order (repeats count) of s(t, d)

The arrays are bm25s's CSC layout and file names (data/indices/indptr `.csc.index.npy`,
`params.index.json`, `vocab.index.json`), so `bm25s.BM25.load(dir, mmap=True)` reads the same
index. Searching does not load bm25s's vocab dict (a 1M-token dict costs ~100 MB per process):
the vocabulary is also stored sorted (`vocab.sorted.bin` + offsets; token id = rank), looked up
by binary search on the memory map. Every array is opened with `np.load(mmap_mode="r")`, so
worker processes share the pages through the OS page cache.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from arlarena_envs.errors import InvalidArgumentError
from arlarena_envs.webshop.search import B, K1, SEARCH_RETURN_N, _WORD

DATA, INDICES, INDPTR = "data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy"
VOCAB_BLOB, VOCAB_OFFSETS = "vocab.sorted.bin", "vocab.offsets.npy"
MAX_SCORE, SEED_PTR, SEED_DOC = "max_score.npy", "seed_ptr.npy", "seed_docs.npy"
RESULT_CACHE = 2048  # queries; longer than CACHED_QUERY_CHARS are not cached
CACHED_QUERY_CHARS = 1000
CACHE_BYTES = 16 << 20  # the stem cache's bound
SEED_DOCS = 32  # per token, its best-scoring documents: the first candidates of a query
DENSE_SLOT, DENSE_ROWS = "dense_slot.npy", "dense_rows.npy"
DENSE_ROW_FRACTION = 1 / 16  # tokens in at least this share of documents get a dense row...
DENSE_ROWS_MAX = 64  # ...at most this many (64 x 4 MB at 1M documents)...
DENSE_ROW_MIN_DOCS = 50_000  # ...in indexes of at least this many documents
DENSE_POSTINGS = 200_000  # below this many postings a dense sum beats pruning's fixed passes...
DENSE_POSTINGS_PER_DOC = 8  # ...and below this many per document (the blocked dense sum beat pruning on every
# query of bench_webshop_scale.py's mix at 1M products, up to 4 postings per document)
MARGIN = 1e-4  # relative slack on every bound: float32 sums in another order differ by ~1e-6
SCORE_BLOCK = 1 << 17  # documents per block of a dense sum: 512 KB of float32 stays in L2 while every token is added
SAMPLE_STRIDE = 64  # top_k: every 64th score estimates the k-th best, in arrays of at least...
SAMPLE_MIN_DOCS = 1 << 16  # ...this many documents
KEPT_BUFFERS = 2  # score buffers kept for reuse (one per concurrently searching thread; more are freed)


class Tokenizer:
    """`SearchIndex._tokens`: lower case -> words of 2+ chars -> drop stop words -> stem (cached,
    the cache bounded by bytes against unbounded query vocabularies)."""

    def __init__(self, max_cache_bytes: int = CACHE_BYTES):
        import Stemmer
        from bm25s.stopwords import STOPWORDS_EN

        self._stop = frozenset(STOPWORDS_EN)
        self._stemmer = Stemmer.Stemmer("english")
        self._stems: dict[str, str] = {}
        self._bytes, self._max = 0, max_cache_bytes
        self._lock = threading.Lock()

    def __call__(self, text: str) -> list[str]:
        words = [w for w in _WORD.findall(text.lower()) if w not in self._stop]
        with self._lock:
            missing = [w for w in set(words) if w not in self._stems]
            if not missing:
                return [self._stems[w] for w in words]
            new = dict(zip(missing, self._stemmer.stemWords(missing)))
            out = [new[w] if w in new else self._stems[w] for w in words]
            added = sum(2 * len(w) + 100 for w in new)
            if self._bytes + added > self._max:
                self._stems.clear()
                self._bytes = 0
            if added <= self._max:
                self._stems.update(new)
                self._bytes += added
            return out


class TokenIds:
    """Token strings -> provisional ids while documents stream in (flat int32 chunks)."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self._chunks: list[np.ndarray] = []
        self._pending: list[int] = []
        self.doc_lens: list[int] = []

    def add(self, tokens: Sequence[str]) -> None:
        v = self.vocab
        ids = [v.setdefault(t, len(v)) for t in tokens]
        self._pending.extend(ids)
        self.doc_lens.append(len(ids))
        if len(self._pending) >= 1 << 22:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append(np.asarray(self._pending, dtype=np.int32))
            self._pending = []

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(token ids of all documents concatenated, document lengths)."""
        self._flush()
        flat = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int32)
        self._chunks = []
        return flat, np.asarray(self.doc_lens, dtype=np.int64)


def build_index(tokens: TokenIds, out_dir: str | Path) -> dict[str, int]:
    """Write the BM25 arrays of the streamed documents to `out_dir`; returns their sizes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flat, doc_lens = tokens.arrays()
    n_docs = int(doc_lens.size)
    # final token id = rank of the token in sorted (code point) order, so the sorted vocabulary
    # file needs no id column
    words = list(tokens.vocab)
    order = sorted(range(len(words)), key=words.__getitem__)
    rank = np.empty(len(words), dtype=np.int64)
    rank[np.asarray(order, dtype=np.int64)] = np.arange(len(words), dtype=np.int64)
    sorted_words = [words[i] for i in order]
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), doc_lens)
    key = (rank[flat] << 32) | doc_of  # one entry per token occurrence, (token, doc) order once sorted
    del doc_of, flat
    key, tf = np.unique(key, return_counts=True)
    col = (key >> 32).astype(np.int64)
    row = (key & 0xFFFFFFFF).astype(np.int32)
    del key
    n_vocab = len(sorted_words)
    df = np.bincount(col, minlength=n_vocab)
    idf = np.array([math.log(1 + (n_docs - int(d) + 0.5) / (int(d) + 0.5)) if d else 0.0 for d in df], dtype=np.float32)
    avgdl = doc_lens.mean()  # bm25s: np.array([len(doc) ...]).mean()
    norm = K1 * ((1 - B) + (B * doc_lens) / avgdl)  # per document, float64 as bm25s
    tf64 = tf.astype(np.float32).astype(np.float64)
    data = (idf[col].astype(np.float64) * (tf64 / (norm[row] + tf64))).astype(np.float32)
    del tf64, tf
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    np.save(out / DATA, data)
    np.save(out / INDICES, row)
    np.save(out / INDPTR, indptr)
    _save_pruning_tables(out, data, row, indptr)
    _save_dense_rows(out, data, row, indptr, n_docs)
    blob = "".join(sorted_words).encode("utf-8", "surrogatepass")
    offsets = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum([len(w.encode("utf-8", "surrogatepass")) for w in sorted_words], out=offsets[1:])
    (out / VOCAB_BLOB).write_bytes(blob)
    np.save(out / VOCAB_OFFSETS, offsets)
    # bm25s's own metadata, so bm25s.BM25.load(out, mmap=True) opens the same index
    params = {"k1": K1, "b": B, "delta": 0.5, "method": "lucene", "idf_method": "lucene", "dtype": "float32",
              "int_dtype": "int32", "num_docs": n_docs, "version": _bm25s_version(), "backend": "numpy"}
    (out / "params.index.json").write_text(json.dumps(params, indent=2), encoding="utf-8")
    (out / "vocab.index.json").write_text(json.dumps({w: i for i, w in enumerate(sorted_words)}, ensure_ascii=False), encoding="utf-8")
    return {"docs": n_docs, "vocab": n_vocab, "postings": int(data.size)}


def _save_dense_rows(out: Path, data: np.ndarray, rows: np.ndarray, indptr: np.ndarray, n_docs: int) -> None:
    """The most frequent tokens' scores as dense float32 rows (0.0 where absent), so a query
    adds them with one vector add instead of a scatter of up to N postings (x + 0.0 == x, so the
    sums are unchanged)."""
    df = np.diff(indptr)
    frequent: list[int] = []
    if n_docs >= DENSE_ROW_MIN_DOCS:
        frequent = [int(t) for t in np.argsort(-df, kind="stable")[:DENSE_ROWS_MAX] if df[t] >= max(1, n_docs * DENSE_ROW_FRACTION)]
    slot = np.full(df.size, -1, dtype=np.int32)
    mat = np.zeros((len(frequent), n_docs), dtype=np.float32)
    for i, t in enumerate(frequent):
        s, e = int(indptr[t]), int(indptr[t + 1])
        mat[i, rows[s:e]] = data[s:e]
        slot[t] = i
    np.save(out / DENSE_SLOT, slot)
    np.save(out / DENSE_ROWS, mat)


def _save_pruning_tables(out: Path, data: np.ndarray, rows: np.ndarray, indptr: np.ndarray) -> None:
    """Per token: its largest score (MaxScore's upper bound) and its SEED_DOCS best documents."""
    df = np.diff(indptr)
    max_score = np.zeros(df.size, dtype=np.float32)
    nonempty = df > 0
    if nonempty.any():
        max_score[nonempty] = np.maximum.reduceat(data, indptr[:-1][nonempty])
    seed_ptr = np.zeros(df.size + 1, dtype=np.int64)
    np.cumsum(np.minimum(df, SEED_DOCS), out=seed_ptr[1:])
    seeds = np.empty(int(seed_ptr[-1]), dtype=np.int32)
    for t in range(df.size):
        s, e = int(indptr[t]), int(indptr[t + 1])
        if e - s <= SEED_DOCS:
            seeds[seed_ptr[t] : seed_ptr[t + 1]] = rows[s:e]
        else:
            seeds[seed_ptr[t] : seed_ptr[t + 1]] = rows[s:e][np.argpartition(data[s:e], e - s - SEED_DOCS)[e - s - SEED_DOCS :]]
    np.save(out / MAX_SCORE, max_score)
    np.save(out / SEED_PTR, seed_ptr)
    np.save(out / SEED_DOC, seeds)


def _bm25s_version() -> str:
    import bm25s

    return getattr(bm25s, "__version__", "unknown")


def _mapped(path: Path) -> np.ndarray:
    """A read-only memory map of a .npy file, as a plain ndarray view (fast slicing)."""
    return np.load(path, mmap_mode="r").view(np.ndarray)


class _SortedVocab(Sequence[bytes]):
    """The sorted vocabulary as a sequence of UTF-8 byte strings (for bisect)."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray):
        self._blob, self._off = blob, offsets
        self._ids: dict[str, int | None] = {}

    def __len__(self) -> int:
        return int(self._off.size) - 1

    def __getitem__(self, i):  # type: ignore[override]
        return self._blob[int(self._off[i]) : int(self._off[i + 1])].tobytes()

    def id_of(self, token: str) -> int | None:
        got = self._ids.get(token, -2)
        if got != -2:
            return got
        b = token.encode("utf-8", "surrogatepass")
        i = bisect.bisect_left(self, b)
        got = i if i < len(self) and self[i] == b else None
        if len(token) <= 100:  # bounded by count and key length against unbounded query vocabularies
            if len(self._ids) > 100_000:
                self._ids.clear()
            self._ids[token] = got
        return got


class DiskSearchIndex:
    """A memory-mapped BM25 index; `search(query)` -> document indices, as `SearchIndex.search`."""

    def __init__(self, index_dir: str | Path):
        d = Path(index_dir)
        self.data = _mapped(d / DATA)
        self.indices = _mapped(d / INDICES)
        self.indptr = _mapped(d / INDPTR)
        params = json.loads((d / "params.index.json").read_text(encoding="utf-8"))
        self.num_docs = int(params["num_docs"])
        blob = np.memmap(d / VOCAB_BLOB, dtype=np.uint8, mode="r").view(np.ndarray) if (d / VOCAB_BLOB).stat().st_size else np.zeros(0, np.uint8)
        self.vocab = _SortedVocab(blob, _mapped(d / VOCAB_OFFSETS))
        self.max_score = _mapped(d / MAX_SCORE)
        self.seed_ptr = _mapped(d / SEED_PTR)
        self.seed_docs = _mapped(d / SEED_DOC)
        self.dense_slot = _mapped(d / DENSE_SLOT)
        rows = np.load(d / DENSE_ROWS, mmap_mode=None if self.dense_slot.max(initial=-1) < 0 else "r")  # an empty array cannot be mapped
        self.dense_rows = rows.view(np.ndarray)
        self._tokens = Tokenizer()
        self._cache: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self._buffers: list[np.ndarray] = []  # float32[num_docs] score buffers, reused (no page faults per query)

    def token_ids(self, query: str) -> list[int] | None:
        """The query's token ids in order (repeats kept, unknown tokens dropped); None: no token."""
        tokens = self._tokens(query)
        if not tokens:
            return None
        return [i for i in (self.vocab.id_of(t) for t in tokens) if i is not None]

    def scores(self, query: str) -> np.ndarray | None:
        """float32 BM25 scores of every document (None when the query has no token): the
        reference the pruned search must agree with, as bm25s's `get_scores`."""
        ids = self.token_ids(query)
        if ids is None:
            return None
        scores = np.zeros(self.num_docs, dtype=np.float32)
        for t in ids:
            self._add(scores, t)
        return scores

    def sum_scores(self, ids: Sequence[int], out: np.ndarray) -> np.ndarray:
        """out = the float32 scores of the tokens `ids` summed in query order, as `scores` (the
        same additions for every document, so the same bits), in blocks of SCORE_BLOCK documents:
        a block of `out` stays in cache while every token is added to it, instead of every token
        streaming the whole array through memory once more."""
        n = self.num_docs
        edges = list(range(0, n, SCORE_BLOCK)) + [n]
        # per token: its dense row, or its postings (document ids sorted, so the postings of a
        # block are one slice) with where each block's slice starts
        cols: list[tuple[np.ndarray, None, None] | tuple[None, np.ndarray, np.ndarray, list[int]]] = []
        for t in ids:
            j = int(self.dense_slot[t])
            if j >= 0:
                cols.append((self.dense_rows[j], None, None))
            else:
                s, e = int(self.indptr[t]), int(self.indptr[t + 1])
                docs = self.indices[s:e]
                cols.append((None, docs, self.data[s:e], np.searchsorted(docs, edges).tolist()))
        for b in range(len(edges) - 1):
            b0, b1 = edges[b], edges[b + 1]
            o = out[b0:b1]
            o.fill(0.0)
            for col in cols:
                if col[0] is not None:
                    o += col[0][b0:b1]
                else:
                    lo, hi = col[3][b], col[3][b + 1]
                    if hi > lo:  # document ids are unique within a token: a plain scatter-add
                        o[col[1][lo:hi] - b0 if b0 else col[1][lo:hi]] += col[2][lo:hi]
        return out

    def _buffer(self) -> np.ndarray:
        with self._lock:
            if self._buffers:
                return self._buffers.pop()
        return np.empty(self.num_docs, dtype=np.float32)

    def _release(self, buf: np.ndarray) -> None:
        with self._lock:
            if len(self._buffers) < KEPT_BUFFERS:
                self._buffers.append(buf)

    def _add(self, scores: np.ndarray, t: int) -> None:
        """scores += token t's scores: one vector add for a dense-row token, else a scatter."""
        j = int(self.dense_slot[t])
        if j >= 0:
            scores += self.dense_rows[j]
        else:
            s, e = int(self.indptr[t]), int(self.indptr[t + 1])
            scores[self.indices[s:e]] += self.data[s:e]  # indices are unique within a column

    def search(self, query: str, k: int = SEARCH_RETURN_N) -> tuple[int, ...]:
        """Indices of the top-k documents with a positive score (score desc, index asc)."""
        key = f"{k}\x00{query}"
        with self._lock:
            got = self._cache.get(key)
            if got is not None:
                self._cache.move_to_end(key)
                return got
        got = self.top_k(query, k)
        if len(query) > CACHED_QUERY_CHARS:
            return got
        with self._lock:
            self._cache[key] = got
            if len(self._cache) > RESULT_CACHE:
                self._cache.popitem(last=False)
        return got


    def exact_scores(self, ids: Sequence[int], docs: np.ndarray) -> np.ndarray:
        """float32 scores of `docs` (sorted, unique), summed in query order as `scores` does."""
        out = np.zeros(docs.size, dtype=np.float32)
        per_token: dict[int, np.ndarray] = {}
        for t in ids:
            got = per_token.get(t)
            if got is None:
                got = per_token[t] = self._column_scores(t, docs).astype(np.float32)  # float32 values, exact
            out += got  # adding 0.0 leaves a float32 unchanged: same sums as the dense path
        return out

    def top_k(self, query: str, k: int = SEARCH_RETURN_N, method: str = "auto") -> tuple[int, ...]:
        """`top_k(self.scores(query), k)`, by the cheaper of two exact methods.

        "dense" adds every posting of the query's tokens into a score per document; "pruned"
        (MaxScore) skips the postings of frequent, low-scoring tokens. "auto" takes dense when
        the query's postings number below max(DENSE_POSTINGS, 8 x documents) (pruning costs a few
        passes over the documents and lookups per candidate), else pruned. Both give the same results (tests check it).

        1. theta0 = k-th best exact score among the query tokens' seed documents: a lower bound
           of the final k-th best score theta.
        2. Tokens in ascending order of upper bound (max score x repeats): the longest prefix
           whose bounds sum below theta0 is non-essential: a document found only there scores
           < theta0 <= theta. Only the essential tokens' postings are added up (`partial`).
        3. theta1 = max(theta0, k-th best partial) (partial <= exact score, so still <= theta);
           candidates: partial + sum of non-essential bounds >= theta1.
        4. The non-essential tokens are looked up for the candidates one by one (largest bound
           first); after each, theta1 rises to the k-th best sum so far and candidates that
           cannot reach it are dropped. The survivors' exact scores (in query order, as the dense
           sum) give the same top k, ties by index."""
        if method not in ("auto", "dense", "pruned"):
            raise InvalidArgumentError(f"method must be 'auto', 'dense' or 'pruned', got {method!r}")
        ids = self.token_ids(query)
        if not ids:
            return ()
        if method == "auto":
            postings = sum(int(self.indptr[t + 1] - self.indptr[t]) for t in ids)
            method = "dense" if postings < max(DENSE_POSTINGS, DENSE_POSTINGS_PER_DOC * self.num_docs) else "pruned"
        if method == "dense":
            buf = self._buffer()
            try:
                return top_k(self.sum_scores(ids, buf), k)
            finally:
                self._release(buf)
        uniq, mult = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)
        seeds = np.unique(np.concatenate([self.seed_docs[int(self.seed_ptr[t]) : int(self.seed_ptr[t + 1])] for t in uniq]))
        seed_scores = self.exact_scores(ids, seeds)
        positive = seed_scores[seed_scores > 0]
        theta0 = float(np.partition(positive, positive.size - k)[positive.size - k]) * (1 - MARGIN) if positive.size >= k else 0.0
        bound = self.max_score[uniq].astype(np.float64) * mult * (1 + MARGIN)
        order = np.argsort(bound, kind="stable")
        cum = np.cumsum(bound[order])
        n_lazy = int(np.searchsorted(cum, theta0, side="left")) if theta0 > 0 else 0  # cum[:n_lazy] < theta0
        lazy_sum = float(cum[n_lazy - 1]) if n_lazy else 0.0
        essential = set(int(t) for t in uniq[order[n_lazy:]])
        partial = np.zeros(self.num_docs, dtype=np.float32)
        for t in ids:
            if t in essential:
                self._add(partial, t)
        theta1 = max(theta0, _kth_largest(partial, k) * (1 - MARGIN))
        if theta1 <= 0:  # fewer than k documents score: every one is a result
            cand = np.flatnonzero(partial > 0)
            return top_k_of(cand, self.exact_scores(ids, cand), k)
        cand = np.flatnonzero(partial * np.float32(1 + MARGIN) >= np.float32(theta1 - lazy_sum))
        # add the non-essential tokens one at a time (largest bound first), dropping candidates
        # that can no longer reach theta1 with what is left
        upper = partial[cand].astype(np.float64)
        left = lazy_sum
        for j in order[:n_lazy][::-1]:
            t = int(uniq[j])
            upper += self._column_scores(t, cand) * int(mult[j])
            left -= float(bound[j])
            # `upper` now holds exact parts of each candidate's score: its k-th best raises theta1
            if upper.size > k:
                theta1 = max(theta1, float(np.partition(upper, upper.size - k)[upper.size - k]) * (1 - MARGIN))
            keep = upper * (1 + MARGIN) + max(left, 0.0) >= theta1
            cand, upper = cand[keep], upper[keep]
        return top_k_of(cand, self.exact_scores(ids, cand), k)

    def _column_scores(self, t: int, docs: np.ndarray) -> np.ndarray:
        """s(t, d) for each of `docs` (sorted): 0 where t does not occur."""
        j = int(self.dense_slot[t])
        if j >= 0:
            return self.dense_rows[j][docs].astype(np.float64)
        s, e = int(self.indptr[t]), int(self.indptr[t + 1])
        col = self.indices[s:e]
        out = np.zeros(docs.size, dtype=np.float64)
        if col.size == 0 or docs.size == 0:
            return out
        pos = np.searchsorted(col, docs.astype(col.dtype, copy=False))  # same dtype: no copy of the column
        np.minimum(pos, col.size - 1, out=pos)
        hit = col[pos] == docs
        out[hit] = self.data[s:e][pos[hit]]
        return out


def _kth_largest(values: np.ndarray, k: int) -> float:
    """The k-th largest entry of a non-negative array (0.0 if it has fewer than k positives),
    looking only at entries above a falling cut, not partitioning the whole array."""
    top = float(values.max(initial=0.0))
    cut = top * 0.75
    while top > 0:
        sel = values[values >= cut] if cut > 0 else values[values > 0]
        if sel.size >= k:
            return float(np.partition(sel, sel.size - k)[sel.size - k])
        if cut <= 0:
            return 0.0
        cut = cut - top * 0.25 if cut > top * 0.3 else 0.0
    return 0.0


def top_k_of(docs: np.ndarray, scores: np.ndarray, k: int) -> tuple[int, ...]:
    """The k best positive `scores`' documents, score desc then document asc."""
    keep = scores > 0
    docs, scores = docs[keep], scores[keep]
    if docs.size > k:
        kth = np.partition(scores, docs.size - k)[docs.size - k]
        m = scores >= kth
        docs, scores = docs[m], scores[m]
    order = np.lexsort((docs, -scores.astype(np.float64)))[:k]
    return tuple(int(i) for i in docs[order])


def top_k(scores: np.ndarray | None, k: int) -> tuple[int, ...]:
    """The k best positive scores' indices, score desc then index asc (the full-sort order,
    found with a partition: only documents scoring at least the k-th best are sorted).

    Large arrays: a threshold t > 0 from a strided sample (its r-th best, r ~ 4k/stride + 8);
    if at least k documents score >= t, the k-th best score is >= t, so those documents hold
    the whole answer (ties included) and only they are partitioned. Otherwise (an unlucky
    sample) a lower sample rank, then every positive score, as for small arrays."""
    if scores is None:
        return ()
    n = scores.size
    if n >= SAMPLE_MIN_DOCS and k > 0:
        sample = scores[::SAMPLE_STRIDE]
        m = sample.size
        for r in (4 * k // SAMPLE_STRIDE + 8, 16 * k // SAMPLE_STRIDE + 64):
            if r > m:
                break
            t = np.partition(sample, m - r)[m - r]
            if not t > 0:
                break
            hits = np.flatnonzero(scores >= t)
            if hits.size >= k:
                return top_k_of(hits, scores[hits], k)
    hits = np.flatnonzero(scores > 0)
    if hits.size == 0:
        return ()
    s = scores[hits]
    if hits.size > k:
        kth = np.partition(s, hits.size - k)[hits.size - k]
        keep = s >= kth
        hits, s = hits[keep], s[keep]
    order = np.lexsort((hits, -s.astype(np.float64)))[:k]
    return tuple(int(i) for i in hits[order])
