"""The on-disk WebShop catalogue (store): equal to the in-memory loaders, memory-mapped by
several processes, derived splits, streamed sources, integrity checks."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arlarena_envs.errors import DataError
from arlarena_envs.registry import make
from arlarena_envs.webshop import disk_index, sources
from arlarena_envs.webshop.catalogue import checksum
from arlarena_envs.webshop.disk_index import top_k
from arlarena_envs.webshop.generator import generate_products, load_embedded_catalogue
from arlarena_envs.webshop.search import SearchIndex, index_text
from arlarena_envs.webshop.store import StoreCatalogue, build_generated_store, build_original_store, open_store, write_store

ROOT = Path(__file__).resolve().parents[1]
PER_TYPE = 50  # 2,000 products


def _queries(cat, n=150, seed=0):
    rng = random.Random(seed)
    out = ["", "the of", "zebra", "shoe", "Running SHOES rubber sole", "design", "color: black, size: 8"]
    for _ in range(n):
        words = cat.goals[rng.randrange(len(cat.goals))]["instruction_text"].replace(",", " ").split()
        k = rng.randint(1, min(10, len(words)))
        start = rng.randrange(0, len(words) - k + 1)
        out.append(" ".join(words[start : start + k]))
    return out


@pytest.fixture(scope="module")
def embedded_store(tmp_path_factory):
    """The embedded catalogue (seed 0, 50 per type) written as a store (with dense rows for the
    frequent tokens, which large indexes get)."""
    out = tmp_path_factory.mktemp("store") / "embedded"
    mp = pytest.MonkeyPatch()
    mp.setattr(disk_index, "DENSE_ROW_MIN_DOCS", 0)
    mp.setattr(disk_index, "DENSE_ROWS_MAX", 16)
    try:
        write_store(
            generate_products(0, PER_TYPE), out, name="embedded-50", source={"kind": "test"}, price_rule="embedded", price_seed=1, nouns="catalogue"
        )
    finally:
        mp.undo()
    assert StoreCatalogue(out).index.dense_rows.shape == (16, 40 * PER_TYPE)
    return out


def test_store_equals_in_memory_catalogue(embedded_store):
    mem = load_embedded_catalogue(0, PER_TYPE)
    st = StoreCatalogue(embedded_store)
    assert len(st.products) == len(mem.products) == 40 * PER_TYPE
    assert len(st.goals) == len(mem.goals)
    assert checksum(list(st.goals)) == checksum(mem.goals)  # every goal, in the fixed order
    assert st.goals[-1] == mem.goals[-1] and st.goals[17] == mem.goals[17]
    assert all(st.prices[a] == mem.prices[a] for a in mem.prices)
    assert all(st.by_asin[p["asin"]] == i for i, p in enumerate(mem.products))
    assert "nope" not in st.by_asin and "E999999999" not in st.by_asin
    assert [st.products[i]["Title"] for i in (0, 5, len(mem.products) - 1)] == [mem.products[i]["Title"] for i in (0, 5, len(mem.products) - 1)]
    for q in _queries(mem):
        dense = top_k(st.index.scores(q), 50)
        assert st.search(q) == st.index.top_k(q, method="pruned") == dense == mem.search(q), q


@pytest.mark.parametrize("dense_rows", [False, True])
def test_pruned_search_equals_dense_scores_on_a_skewed_index(tmp_path, monkeypatch, dense_rows):
    if dense_rows:
        monkeypatch.setattr(disk_index, "DENSE_ROW_MIN_DOCS", 0)
    # many near-identical documents and a token in every one: the ties and bounds MaxScore must get right
    rng = random.Random(3)
    vocab = ["alpha", "beta", "gamma", "delta", "omega", "common"]
    docs = [" ".join(["common"] + rng.choices(vocab[:5], k=rng.randint(1, 6))) for _ in range(3000)]
    prods = [{"asin": f"T{i:05d}", "Title": d, "name": d, "Description": "", "BulletPoints": [], "options": {}, "pricing": [10.0], "Price": "$10.0",
              "query": "q", "category": "c", "product_category": "a › b", "Attributes": []} for i, d in enumerate(docs)]
    write_store(prods, tmp_path / "s", name="skew", source={}, price_rule="original", price_seed=0, nouns="heuristic")
    idx = StoreCatalogue(tmp_path / "s").index
    mem = SearchIndex([index_text(p) for p in prods])
    for q in ["common", "alpha common", "alpha alpha beta", "omega delta gamma beta alpha common", "beta gamma", "zzz alpha"]:
        assert idx.top_k(q, method="pruned") == idx.top_k(q) == top_k(idx.scores(q), 50) == mem.search(q), q
    with pytest.raises(ValueError, match="method"):
        idx.top_k("alpha", method="bogus")


def _reference_top_k(scores, k):
    """The plain definition: every positive score, sorted by (score desc, index asc), first k."""
    hits = np.flatnonzero(scores > 0)
    order = np.lexsort((hits, -scores[hits].astype(np.float64)))
    return tuple(int(i) for i in hits[order[:k]])


@pytest.mark.parametrize("block", [7, 64, 1 << 17])
def test_blocked_dense_sum_and_sampled_top_k_equal_the_reference(embedded_store, monkeypatch, block):
    """The dense path sums in blocks into a reused buffer and finds the k-th best from a sample
    (small sizes forced here, so both run on a 2,000-document index): the same bits and the same
    ranking as the reference scorer and the in-memory bm25s search."""
    monkeypatch.setattr(disk_index, "SCORE_BLOCK", block)
    monkeypatch.setattr(disk_index, "SAMPLE_MIN_DOCS", 0)
    monkeypatch.setattr(disk_index, "SAMPLE_STRIDE", 16)
    mem = load_embedded_catalogue(0, PER_TYPE)
    idx = StoreCatalogue(embedded_store).index
    buf = np.full(idx.num_docs, np.nan, dtype=np.float32)  # garbage in the buffer must not leak into sums
    for q in _queries(mem, n=120, seed=4):
        ids = idx.token_ids(q)
        ref = idx.scores(q)
        if not ids:
            assert idx.top_k(q, method="dense") == () == mem.search(q)
            continue
        assert np.array_equal(idx.sum_scores(ids, buf), ref), q  # bit for bit
        for k in (1, 5, 50, 3000):
            assert top_k(ref, k) == _reference_top_k(ref, k), (q, k)
        assert idx.top_k(q, method="dense") == _reference_top_k(ref, 50) == mem.search(q), q


def test_sampled_top_k_keeps_ties_and_falls_back(monkeypatch):
    monkeypatch.setattr(disk_index, "SAMPLE_MIN_DOCS", 0)
    rng = np.random.default_rng(0)
    flat = np.zeros(5000, np.float32)
    flat[rng.choice(5000, 400, replace=False)] = 1.5  # 400 ties, sampled or not
    flat[[3, 4999, 2500]] = [2.0, 2.0, 3.0]
    sparse = np.zeros(5000, np.float32)
    sparse[[10, 20, 4990]] = [0.5, 0.25, 0.5]  # fewer positives than k: every sample threshold is 0
    skewed = rng.random(5000).astype(np.float32) ** 8
    for scores in (flat, sparse, skewed, np.zeros(5000, np.float32)):
        for k in (1, 3, 50, 401):
            assert top_k(scores, k) == _reference_top_k(scores, k)


def test_two_processes_map_the_same_store(embedded_store):
    """A second process opens the same files as memory maps and gets the same results."""
    st = StoreCatalogue(embedded_store)
    qs = _queries(st, 40, seed=1)
    code = (
        "import json, sys, psutil\n"
        "from arlarena_envs.webshop.store import open_store\n"
        "cat = open_store(sys.argv[1])\n"
        "qs = json.loads(sys.stdin.read())\n"
        "out = {'search': [list(cat.search(q)) for q in qs], 'goals': [cat.goals[k] for k in (0, 1, 999)],\n"
        "       'products': [cat.products[i]['asin'] for i in range(len(cat.products))],\n"
        "       'maps': sorted({m.path.rsplit('/', 1)[-1] for m in psutil.Process().memory_maps()}),\n"
        "       'open': sorted({f.path.rsplit('/', 1)[-1] for f in psutil.Process().open_files()})}\n"
        "print(json.dumps(out))\n"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", code, str(embedded_store)], input=json.dumps(qs), capture_output=True, text=True, env=env, check=True)
    child = json.loads(r.stdout)
    assert child["search"] == [list(st.search(q)) for q in qs]
    assert child["goals"] == [st.goals[k] for k in (0, 1, 999)]
    assert child["products"] == [st.products[i]["asin"] for i in range(len(st.products))]
    # postings and tables are file-backed mappings in the child, not private copies; products are
    # read from the open file (pread), so their pages stay in the page cache, outside its resident set
    assert {"data.csc.index.npy", "indices.csc.index.npy", "goal_order.npy"} <= set(child["maps"])
    assert "products.jsonl" not in child["maps"] and "products.jsonl" in child["open"]


def test_env_on_a_store_plays_as_the_in_memory_env(tmp_path):
    """The spec's own catalogue as a store: episodes identical to arlarena/WebShop-v0's."""
    write_store(generate_products(0, 60), tmp_path / "v0", name="v0", source={}, price_rule="embedded", price_seed=1, nouns="catalogue")
    a = make("arlarena/WebShop-v0").unwrapped
    b = make("arlarena/WebShop-v0", catalogue="store", store=str(tmp_path / "v0")).unwrapped
    assert a.n_tasks("train") == b.n_tasks("train") == 8302 - 500 and a.n_tasks("test") == b.n_tasks("test") == 500
    rng = random.Random(0)
    for seed in (0, 7, 4242):
        assert a.reset(seed=seed) == b.reset(seed=seed)
        for _ in range(15):
            act = a.oracle_action() if rng.random() < 0.7 else rng.choice(a.observation.admissible_actions)
            if act == "search[<your query>]":
                act = "search[" + " ".join(a.observation.task.split()[2:6]) + "]"
            ra, rb = a.step_result(act), b.step_result(act)
            assert ra == rb
            if ra.done:
                break


def test_splits_are_derived_from_the_goal_count(tmp_path):
    m = build_generated_store(tmp_path / "g", 300, seed=5)
    env = make("arlarena/WebShop-v0", catalogue="store", store=str(tmp_path / "g")).unwrapped
    assert m.goals > 500
    assert env.n_tasks("test") == 500 and env.n_tasks("train") == m.goals - 500
    env.reset(options={"split": "train", "task_index": m.goals - 501})
    assert env.goal == env.catalogue.goals[m.goals - 1]  # the last goal is reachable
    with pytest.raises(ValueError):
        env.reset(options={"split": "train", "task_index": m.goals - 500})
    # in memory too: a larger embedded catalogue's train split covers all its goals
    big = make("arlarena/WebShop-v0", products_per_type=70).unwrapped
    assert big.n_tasks("train") == len(big.catalogue.goals) - 500 > 8302 - 500
    # a catalogue with fewer goals than the test split: test is all of it, train does not exist
    build_generated_store(tmp_path / "tiny", 20, seed=5)
    tiny = make("arlarena/WebShop-v0", catalogue="store", store=str(tmp_path / "tiny"), split="test").unwrapped
    assert tiny.n_tasks("test") == len(tiny.catalogue.goals) < 500
    with pytest.raises(DataError, match="empty"):
        tiny.reset(options={"split": "train"})


def test_goals_are_built_lazily(tmp_path):
    """No goal list: goal k comes from the arrays; all goals of a product differ in options only."""
    m = build_generated_store(tmp_path / "g", 200, seed=1)
    st = open_store(tmp_path / "g")
    assert not hasattr(st.goals, "__dict__") or not any(isinstance(v, list) and len(v) == m.goals for v in vars(st.goals).values())
    seen = {}
    for k in range(m.goals):
        g = st.goals[k]
        seen.setdefault(g["asin"], set()).add(json.dumps(g["goal_options"], sort_keys=True))
    p = st.product(next(iter(seen)))
    n = 1
    for v in p["options"].values():
        n *= len(v)
    assert len(seen[p["asin"]]) == n  # one goal per option combination
    assert sum(len(v) for v in seen.values()) == m.goals
    with pytest.raises(IndexError):
        st.goals[m.goals]


def test_generated_stream_is_deterministic_and_random_access():
    a = [sources.generated_product(j, 3) for j in (0, 1, 99)]
    b = list(sources.generated_products(100, 3))
    assert a == [b[0], b[1], b[99]]
    assert sources.generated_product(0, 4) != a[0]
    assert len({p["query"] for p in b}) > 20


def _raw(p: dict, i: int) -> dict:
    """A cleaned generated product back in the original items_shuffle format."""
    price = f"${p['pricing'][0]}" if len(p["pricing"]) == 1 else f"${p['pricing'][0]} - ${p['pricing'][1]}"
    return {
        "asin": p["asin"], "name": p["Title"], "full_description": p["Description"], "small_description": p["BulletPoints"],
        "pricing": price if i % 7 else "", "images": [f"https://example.invalid/{i}.jpg"], "category": p["category"],
        "query": p["query"].upper() + "  ", "product_category": p["product_category"],
        "customization_options": {k.title(): [{"value": v.upper() + " ", "image": None} for v in vals] for k, vals in p["options"].items()},
    }


def test_original_format_streamed_equals_the_original_loader(tmp_path, monkeypatch):
    from arlarena_envs.webshop.original import _products_for_checksum, load_original_catalogue

    prods = generate_products(2, 8)  # 320 products
    raw = [_raw(p, i) for i, p in enumerate(prods)]
    raw.insert(10, dict(raw[3]))  # a duplicate ASIN: the first is kept
    raw.insert(20, dict(raw[5], asin="nan"))
    raw.insert(30, dict(raw[6], asin="ABCDEFGHIJK"))  # longer than 10: dropped
    attrs = {p["asin"]: {"attributes": p["Attributes"], "instruction": p["instruction_text"], "instruction_attributes": p["instruction_attributes"]}
             for i, p in enumerate(prods) if i % 11}  # some ASINs absent: DUMMY_ATTR, no goals
    data = tmp_path / "orig"
    data.mkdir()
    (data / "items_shuffle.json").write_text(json.dumps(raw, indent=2, ensure_ascii=False), encoding="utf-8")
    (data / "items_ins_v2.json").write_text(json.dumps(attrs), encoding="utf-8")
    monkeypatch.setattr(sources, "_CHUNK", 777)  # values cross chunk boundaries
    m = build_original_store(tmp_path / "s", data)
    mem = load_original_catalogue(data)
    st = StoreCatalogue(tmp_path / "s")
    assert m.products == len(mem.products) == len(prods) and m.goals == len(mem.goals) > 0
    assert checksum(_products_for_checksum(list(st.products))) == checksum(_products_for_checksum(mem.products))
    assert checksum(list(st.goals)) == checksum(mem.goals)
    assert all(st.prices[a] == mem.prices[a] for a in mem.prices)
    for q in _queries(mem, 60):
        assert st.search(q) == mem.search(q), q
    assert st.nouns(mem.products[0]["Title"]) == mem.nouns(mem.products[0]["Title"])


def test_json_streams_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_CHUNK", 3)
    f = tmp_path / "a.json"
    items = [12345, -0.5e-3, "x\u00e9\"y", {"k": [1, {"z": None}]}, [], True, None, 7]
    f.write_text(" [ " + " ,\n".join(json.dumps(x) for x in items) + " ] ", encoding="utf-8")
    assert list(sources.iter_json_array(f)) == items
    g = tmp_path / "o.json"
    obj = {"a": 1, "b\u00e9": [2, 3], "c": {"d": "e"}, "n": 1234567}
    g.write_text(json.dumps(obj, indent=3), encoding="utf-8")
    assert dict(sources.iter_json_object(g)) == obj
    (tmp_path / "e.json").write_text("[]")
    assert list(sources.iter_json_array(tmp_path / "e.json")) == []
    (tmp_path / "bad.json").write_text('[{"a": 1}, {"b": ')
    with pytest.raises(DataError, match="truncated"):
        list(sources.iter_json_array(tmp_path / "bad.json"))
    with pytest.raises(DataError, match="expected"):
        list(sources.iter_json_array(g))


def test_bm25s_reads_the_same_index(embedded_store):
    import bm25s

    st = StoreCatalogue(embedded_store)
    ref = bm25s.BM25.load(str(embedded_store / "index"), mmap=True)
    for q in ["running shoes rubber sole", "lipstick long lasting red", "hdmi cable 6 ft"]:
        toks = st.index._tokens(q)
        assert np.array_equal(np.asarray(ref.get_scores(toks), dtype=np.float32), st.index.scores(q))


def test_damaged_store_is_refused(tmp_path):
    from arlarena_envs.cli import main

    assert main(["webshop", "build-catalogue", "--products", "50", "--out", str(tmp_path / "s")]) == 0
    assert main(["webshop", "verify-catalogue", str(tmp_path / "s")]) == 0
    assert main(["webshop", "build-catalogue", "--products", "50", "--out", str(tmp_path / "s")]) == 1  # exists: needs --force
    blob = tmp_path / "s" / "products.jsonl"
    data = bytearray(blob.read_bytes())
    data[5] ^= 1
    blob.write_bytes(bytes(data))
    assert main(["webshop", "verify-catalogue", str(tmp_path / "s")]) == 1  # same size, wrong sha256
    blob.write_bytes(bytes(data[:-1]))
    with pytest.raises(DataError, match="wrong size"):
        StoreCatalogue(tmp_path / "s")
    with pytest.raises(DataError, match="not a WebShop store"):
        StoreCatalogue(tmp_path)
    with pytest.raises(DataError, match="store="):
        make("arlarena/WebShop-v0", catalogue="store")


def test_search_caches_are_bounded(embedded_store):
    from arlarena_envs.webshop.disk_index import CACHED_QUERY_CHARS, Tokenizer

    st = StoreCatalogue(embedded_store)
    long_query = "shoes " * (CACHED_QUERY_CHARS // 6 + 1)
    assert st.search(long_query) == top_k(st.index.scores(long_query), 50) != ()
    assert all(len(key) < CACHED_QUERY_CHARS + 8 for key in st.index._cache)
    tok = Tokenizer(max_cache_bytes=2000)
    for i in range(200):
        assert tok(f"word{i}s running") == [f"word{i}", "run"]
        assert tok._bytes <= 2000


SHARED = ROOT.parent / "shared" / "data" / "webshop-1000"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/webshop-1000 not present")
def test_store_of_the_real_original_files_matches_the_spec_checksums(tmp_path):
    """The original 1,000-product files through the streamed loader: WebShop-original-v0's
    recorded product and goal checksums (goal k = the original's goal k)."""
    from arlarena_envs.registry import get_spec
    from arlarena_envs.webshop.original import _products_for_checksum

    want = {d.name: d.sha256 for d in get_spec("arlarena/WebShop-original-v0").data}
    build_original_store(tmp_path / "s", SHARED)
    st = StoreCatalogue(tmp_path / "s")
    assert checksum(_products_for_checksum(list(st.products))) == want["products"]
    assert checksum(list(st.goals)) == want["goals"]
