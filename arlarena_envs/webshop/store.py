"""The on-disk WebShop catalogue: built once from a stream of products, opened read-only by every process.

A store is a directory, written to a temporary sibling and renamed into place when complete:

    manifest.json        format, source, counts, each file's size and sha256, `identity`
    products.jsonl       one product per line, compact UTF-8 JSON (the fields the env reads)
    offsets.npy          int64[N+1]: product i is bytes offsets[i]:offsets[i+1] of products.jsonl
    asins.npy, asin_order.npy   ASINs sorted (<U10) and their product index: ASIN -> product
    price.npy            float64[N]: the env's price of each product
    price_upper.npy      float64[N]: the goal price bound of each product (1e6: no price clause)
    weight.npy           float64[N]: the synthetic goals' weight of each product
    goal_start.npy       int64[N+1]: product i owns unshuffled goals goal_start[i]:goal_start[i+1]
    goal_order.npy       int32/64[G]: goal k is unshuffled goal goal_order[k]
    index/               the BM25 index (disk_index.py; bm25s's layout)

Goals are never materialised. Unshuffled goal g is option combination c = g - goal_start[i] of
its product i, in `itertools.product` order over the sorted option names (the last name varies
fastest); goal k of the fixed order is unshuffled goal `goal_order[k]`, where goal_order is
`random.Random(233).shuffle(list(range(G)))`, the original's shuffle (it moves positions the same
way whatever the list holds). Prices and bounds are drawn in the original's order (all product
prices, then one bound per product with an instruction, one RNG), and the weight is
`mean(1 / count(attribute))` over all goals, so a store holds exactly the goals the in-memory
loaders build (tests check goal-for-goal equality).

Opening a store reads the manifest and maps the arrays (products are read with `pread`, see
`ProductsView`): nothing is parsed up front, pages are shared between worker processes by the OS
page cache, and a process touches only the products and postings its episodes use.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from arlarena_envs.errors import DataError
from arlarena_envs.webshop.catalogue import GOAL_SHUFFLE_SEED, cached, price_upper_for
from arlarena_envs.webshop.disk_index import DiskSearchIndex, TokenIds, Tokenizer, build_index
from arlarena_envs.webshop.nouns import heuristic_nouns
from arlarena_envs.webshop.original import goal_record
from arlarena_envs.webshop.search import index_text
from arlarena_envs.webshop.sources import generated_products, original_products

FORMAT = "arlarena-webshop-store/1"
STORE_ENV_VAR = "ARLARENA_WEBSHOP_STORE"
NO_PRICE_BOUND = 1000000
PRODUCT_KEYS = ("asin", "name", "Title", "title_nouns", "Description", "BulletPoints", "Attributes", "options", "pricing", "Price",
                "Rating", "Reviews", "query", "category", "product_category", "instruction_text", "instruction_attributes")
ARRAYS = ("offsets", "asins", "asin_order", "price", "price_upper", "weight", "goal_start", "goal_order")
PRODUCT_CACHE = 512


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bytes: int
    sha256: str


class Manifest(BaseModel):
    """What a store holds and how it was made (manifest.json)."""

    model_config = ConfigDict(extra="forbid")
    format: str = FORMAT
    name: str
    source: dict[str, Any]
    products: int
    goals: int
    price_rule: Literal["original", "embedded"]
    price_seed: int
    nouns: Literal["catalogue", "heuristic"]
    index: dict[str, int]
    build_seconds: float
    stage_seconds: dict[str, float]  # products (stream + write, of which tokenize), goals (prices, bounds, order), index (arrays)
    stage_cpu_seconds: dict[str, float] = {}  # the same stages in CPU time of the building process
    files: dict[str, FileEntry]
    identity: str  # sha256 of the canonical JSON of `files`: the store's checksum


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def files_identity(files: Mapping[str, FileEntry]) -> str:
    """sha256 of the canonical JSON {relative path: {bytes, sha256}} (sorted keys)."""
    doc = {k: files[k].model_dump() for k in sorted(files)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---------------------------------------------------------------------- prices (the loaders' rules)


def product_price(pricing: Sequence[float], rule: str, rng: random.Random) -> float:
    """original: pricing[0], uniform(lo, hi) for a range, 100.0 without a price
    (`original.generate_prices`); embedded: the same with the range price rounded to cents."""
    if not pricing:
        return 100.0
    if len(pricing) == 1:
        return pricing[0]
    if rule == "embedded":
        return round(rng.uniform(*pricing), 2)
    return rng.uniform(*pricing[:2])


# ---------------------------------------------------------------------- writing


def write_store(
    products: Iterable[dict[str, Any]],
    out_dir: str | os.PathLike,
    *,
    name: str,
    source: dict[str, Any],
    price_rule: Literal["original", "embedded"],
    price_seed: int,
    nouns: Literal["catalogue", "heuristic"],
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Write the store of the cleaned `products` (streamed once) to `out_dir`; returns its manifest."""
    t0, c0 = time.perf_counter(), time.process_time()
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists: pass overwrite=True (--force) to rebuild it, or choose another --out")
    tmp = out.with_name(f".{out.name}.building-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        manifest = _write(products, tmp, name=name, source=source, price_rule=price_rule, price_seed=price_seed, nouns=nouns, say=say, t0=t0, c0=c0)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"store {out}: {manifest.products:,} products, {manifest.goals:,} goals, {manifest.build_seconds:.1f} s")
    return manifest


def _write(products, tmp: Path, *, name, source, price_rule, price_seed, nouns, say, t0, c0) -> Manifest:
    offsets = [0]
    asins: list[str] = []
    pricings: list[tuple[float, ...]] = []
    has_goals: list[bool] = []
    n_goals: list[int] = []
    attr_ids: list[tuple[int, ...]] = []
    attr_vocab: dict[str, int] = {}
    attr_count: list[int] = []  # goals per attribute (one count per attribute occurrence per goal)
    tokenizer, tokens = Tokenizer(), TokenIds()
    pos, tokenize_s, tokenize_cpu = 0, 0.0, 0.0
    with open(tmp / "products.jsonl", "wb") as blob:
        for i, p in enumerate(products):
            rec = {k: p[k] for k in PRODUCT_KEYS if k in p}
            line = json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass") + b"\n"
            blob.write(line)
            pos += len(line)
            offsets.append(pos)
            asin = p["asin"]
            if len(asin) > 10:
                raise DataError(f"product {i}: ASIN {asin!r} is longer than 10 characters (the original loader drops those)")
            asins.append(asin)
            pricings.append(tuple(p["pricing"]))
            has = p.get("instruction_text") is not None
            has_goals.append(has)
            count, ids = 0, ()
            if has:
                attrs = p["instruction_attributes"]
                if not attrs:
                    raise DataError(f"product {asin} has an instruction but no instruction_attributes")
                count = 1
                for values in p["options"].values():
                    count *= len(values)
                ids = tuple(attr_vocab.setdefault(a, len(attr_vocab)) for a in attrs)
                while len(attr_count) < len(attr_vocab):
                    attr_count.append(0)
                for a in ids:
                    attr_count[a] += count
            n_goals.append(count)
            attr_ids.append(ids)
            t_tok, c_tok = time.perf_counter(), time.process_time()
            tokens.add(tokenizer(index_text(p)))
            tokenize_s += time.perf_counter() - t_tok
            tokenize_cpu += time.process_time() - c_tok
            if (i + 1) % 100_000 == 0:
                say(f"  {i + 1:,} products written ({time.perf_counter() - t0:.0f} s)")
    n = len(asins)
    if n == 0:
        raise DataError("the product source yielded no product: nothing to store")
    t_products, c_products = time.perf_counter(), time.process_time()
    say(f"products: {n:,} ({t_products - t0:.1f} s); prices, goals, index next")
    rng = random.Random(price_seed)
    price = np.array([product_price(pr, price_rule, rng) for pr in pricings], dtype=np.float64)
    upper = np.full(n, float(NO_PRICE_BOUND), dtype=np.float64)
    for i in range(n):
        if has_goals[i]:
            upper[i] = price_upper_for(float(price[i]), rng)[0]
    inv = [1.0 / c if c else 0.0 for c in attr_count]
    weight = np.array([sum(inv[a] for a in ids) / len(ids) if ids else 0.0 for ids in attr_ids], dtype=np.float64)
    goal_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.asarray(n_goals, dtype=np.int64), out=goal_start[1:])
    n_total = int(goal_start[-1])
    order = list(range(n_total))
    random.Random(GOAL_SHUFFLE_SEED).shuffle(order)
    goal_order = np.asarray(order, dtype=np.int32 if n_total < 2**31 else np.int64)
    del order, pricings, attr_ids
    asin_arr = np.asarray(asins, dtype="<U10")
    asin_order = np.argsort(asin_arr, kind="stable").astype(np.int64)
    sorted_asins = asin_arr[asin_order]
    dup = np.flatnonzero(sorted_asins[1:] == sorted_asins[:-1])
    if dup.size:
        raise DataError(f"ASIN {sorted_asins[dup[0]]!r} occurs twice in the product stream: the loaders keep the first; clean the source")
    arrays = {"offsets": np.asarray(offsets, dtype=np.int64), "asins": sorted_asins, "asin_order": asin_order, "price": price,
              "price_upper": upper, "weight": weight, "goal_start": goal_start, "goal_order": goal_order}
    for k, v in arrays.items():
        np.save(tmp / f"{k}.npy", v)
    t_goals, c_goals = time.perf_counter(), time.process_time()
    say(f"goals: {n_total:,} ({t_goals - t0:.1f} s); indexing")
    index_stats = build_index(tokens, tmp / "index")
    t_index, c_index = time.perf_counter(), time.process_time()
    stages = {"products": round(t_products - t0, 2), "of which tokenize": round(tokenize_s, 2), "goals": round(t_goals - t_products, 2), "index": round(t_index - t_goals, 2)}
    cpu = {"products": round(c_products - c0, 2), "of which tokenize": round(tokenize_cpu, 2), "goals": round(c_goals - c_products, 2), "index": round(c_index - c_goals, 2)}
    say(f"index: {index_stats} ({time.perf_counter() - t0:.1f} s); hashing")
    files = {str(f.relative_to(tmp)): FileEntry(bytes=f.stat().st_size, sha256=_file_sha256(f)) for f in sorted(tmp.rglob("*")) if f.is_file()}
    manifest = Manifest(name=name, source=source, products=n, goals=n_total, price_rule=price_rule, price_seed=price_seed, nouns=nouns,
                        index=index_stats, build_seconds=round(time.perf_counter() - t0, 2), stage_seconds=stages, stage_cpu_seconds=cpu, files=files, identity=files_identity(files))
    (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=1), encoding="utf-8")
    return manifest


# ---------------------------------------------------------------------- reading


class ProductsView(Sequence[dict]):
    """Product i decoded on demand from products.jsonl (a small LRU keeps recent ones).

    Products are read with `os.pread`, not through a memory map: episodes touch products at
    random, and every mapped page (plus the kernel's fault-around neighbours) would stay in the
    process's resident set and count as its private memory until another process touched the same
    page. Read this way the pages live only in the OS page cache, shared by every worker, and a
    worker's resident set is its own heap. A read is one system call per decoded product.
    """

    def __init__(self, path: Path, offsets: np.ndarray, on_decode: Callable[[dict], None]):
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._off = offsets
        self._cache: OrderedDict[int, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._on_decode = on_decode

    def __del__(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def raw(self, i: int) -> bytes:
        """The stored JSON line of product i (undecoded)."""
        start, end = int(self._off[i]), int(self._off[i + 1])
        got = os.pread(self._fd, end - start, start)
        if len(got) != end - start:  # a store truncated after it was opened
            raise DataError(f"products.jsonl: product {i} is cut short ({len(got)} of {end - start} bytes)")
        return got

    def __len__(self) -> int:
        return int(self._off.size) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"product {i} out of range [0, {len(self)})")
        with self._lock:
            got = self._cache.get(i)
            if got is not None:
                self._cache.move_to_end(i)
                return got
        got = json.loads(self.raw(i).decode("utf-8", "surrogatepass"))
        self._on_decode(got)
        with self._lock:
            self._cache[i] = got
            if len(self._cache) > PRODUCT_CACHE:
                self._cache.popitem(last=False)
        return got

    def __iter__(self) -> Iterator[dict]:
        for i in range(len(self)):
            yield self[i]


class AsinIndex(Mapping[str, int]):
    """ASIN -> product index by binary search over the mapped sorted ASINs."""

    def __init__(self, sorted_asins: np.ndarray, order: np.ndarray):
        self._asins, self._order = sorted_asins, order

    def __getitem__(self, asin: str) -> int:
        if not isinstance(asin, str) or len(asin) > 10:
            raise KeyError(asin)
        j = int(np.searchsorted(self._asins, asin))
        if j < self._asins.size and str(self._asins[j]) == asin:
            return int(self._order[j])
        raise KeyError(asin)

    def __iter__(self) -> Iterator[str]:
        return (str(a) for a in self._asins)

    def __len__(self) -> int:
        return int(self._asins.size)


class PricesView(Mapping[str, float]):
    """ASIN -> price."""

    def __init__(self, by_asin: AsinIndex, price: np.ndarray):
        self._by_asin, self._price = by_asin, price

    def __getitem__(self, asin: str) -> float:
        return float(self._price[self._by_asin[asin]])

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_asin)

    def __len__(self) -> int:
        return len(self._by_asin)


class GoalsView(Sequence[dict]):
    """Goal k of the fixed order, built on demand (module doc); equal to the loaders' goal k."""

    def __init__(self, store: "StoreCatalogue"):
        self._s = store

    def __len__(self) -> int:
        return int(self._s.goal_order.size)

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        k = int(k)
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(f"goal {k} out of range [0, {len(self)})")
        s = self._s
        g = int(s.goal_order[k])
        i = int(np.searchsorted(s.goal_start, g, side="right")) - 1
        c = g - int(s.goal_start[i])
        p = s.products[i]
        names = sorted(p["options"])
        values = []
        for n in reversed(names):  # itertools.product order: the last name varies fastest
            vals = p["options"][n]
            c, r = divmod(c, len(vals))
            values.append(vals[r])
        goal_options = dict(zip(names, reversed(values)))
        upper: float | int = float(s.price_upper[i])
        price_text = "" if upper == NO_PRICE_BOUND else f", and price lower than {upper:.2f} dollars"
        if upper == NO_PRICE_BOUND:
            upper = NO_PRICE_BOUND
        return {**goal_record(p, goal_options, upper, price_text), "weight": float(s.weight[i])}

    def __iter__(self) -> Iterator[dict]:
        for k in range(len(self)):
            yield self[k]


class StoreCatalogue:
    """A store opened read-only: the `Catalogue` interface the env uses, backed by memory maps."""

    def __init__(self, root: str | os.PathLike, verify: Literal["sizes", "full"] = "sizes"):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        check_files(self.root, self.manifest, full=verify == "full")
        # plain ndarray views of the memory maps: np.memmap's Python-level slicing is slow
        a = {k: np.load(self.root / f"{k}.npy", mmap_mode="r").view(np.ndarray) for k in ARRAYS}
        self.price, self.price_upper, self.weight = a["price"], a["price_upper"], a["weight"]
        self.goal_start, self.goal_order = a["goal_start"], a["goal_order"]
        self.name = f"store:{self.manifest.name}"
        self.identity = self.manifest.identity
        self._nouns: dict[str, tuple[str, ...]] = {}
        self.products = ProductsView(self.root / "products.jsonl", a["offsets"], self._remember_nouns)
        self.by_asin = AsinIndex(a["asins"], a["asin_order"])
        self.prices = PricesView(self.by_asin, self.price)
        self.goals = GoalsView(self)
        self.noun_fn = heuristic_nouns if self.manifest.nouns == "heuristic" else None
        self._index: DiskSearchIndex | None = None
        self._lock = threading.Lock()

    def _remember_nouns(self, p: dict) -> None:
        if "title_nouns" in p:
            if len(self._nouns) > 100_000:  # bounded: a process sees few titles
                self._nouns.clear()
            self._nouns[p["Title"]] = tuple(p["title_nouns"])

    @property
    def index(self) -> DiskSearchIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = DiskSearchIndex(self.root / "index")
        return self._index

    def product(self, asin: str) -> dict[str, Any]:
        return self.products[self.by_asin[asin]]

    def nouns(self, name: str) -> tuple[str, ...]:
        """Nouns of a product name: stored with the product (generated), else the noun function."""
        got = self._nouns.get(name)
        if got is None:
            got = tuple((self.noun_fn or heuristic_nouns)(name))
            if len(self._nouns) > 100_000:
                self._nouns.clear()
            self._nouns[name] = got
        return got

    def search(self, keywords: str) -> tuple[int, ...]:
        """Product indices of the top-50 BM25 hits for the query (deterministic)."""
        return self.index.search(keywords)


def read_manifest(root: Path) -> Manifest:
    path = root / "manifest.json"
    if not path.is_file():
        raise DataError(
            f"{root} is not a WebShop store (no manifest.json): build one with "
            "`arlarena webshop build-catalogue --products N --out DIR` (or --from-original DATA_DIR)"
        )
    try:
        m = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise DataError(f"{path} is not a valid store manifest ({e}); rebuild the store") from e
    if m.format != FORMAT:
        raise DataError(f"{root} has store format {m.format!r}, this version reads {FORMAT!r}: rebuild it with this version")
    return m


def check_files(root: Path, manifest: Manifest, full: bool = False) -> None:
    """Every file of the manifest present with its size (and its sha256 when `full`)."""
    if files_identity(manifest.files) != manifest.identity:
        raise DataError(f"{root}/manifest.json was edited (its identity does not match its file list): rebuild the store")
    for rel, entry in manifest.files.items():
        f = root / rel
        if not f.is_file() or f.stat().st_size != entry.bytes:
            raise DataError(f"store file {f} is missing or has the wrong size: the store is incomplete or damaged; rebuild it")
        if full and _file_sha256(f) != entry.sha256:
            raise DataError(f"store file {f} fails its sha256 ({entry.sha256}): the store is damaged; rebuild it")


def resolve_store_dir(store: str | os.PathLike | None) -> Path:
    d = store or os.environ.get(STORE_ENV_VAR)
    if not d:
        raise DataError(
            f"catalogue='store' needs store=<directory built by `arlarena webshop build-catalogue`> or ${STORE_ENV_VAR}"
        )
    return Path(d).expanduser()


def open_store(store: str | os.PathLike | None, verify: Literal["sizes", "full"] = "sizes") -> StoreCatalogue:
    """The process-wide catalogue of a store directory (opened once per process)."""
    root = resolve_store_dir(store).resolve()
    manifest = read_manifest(root)
    return cached(("store", str(root), manifest.identity, verify), lambda: StoreCatalogue(root, verify))  # type: ignore[return-value, arg-type]


# ---------------------------------------------------------------------- the two builds


def build_generated_store(out_dir: str | os.PathLike, products: int, seed: int = 0, **kw: Any) -> Manifest:
    """A store of `products` streamed generated products (sources.generated_products)."""
    return write_store(generated_products(products, seed), out_dir, name=f"generated-{products}-seed{seed}",
                       source={"kind": "generated", "products": products, "seed": seed},
                       price_rule="embedded", price_seed=seed + 1, nouns="catalogue", **kw)


def build_original_store(out_dir: str | os.PathLike, data_dir: str | os.PathLike, price_seed: int = 0, **kw: Any) -> Manifest:
    """A store of the original files in `data_dir` (streamed), synthetic goals, price seed."""
    files = {k: kw.pop(k) for k in ("products_file", "attributes_file") if k in kw}
    return write_store(original_products(data_dir, **files), out_dir, name=f"original-{Path(data_dir).name}",
                       source={"kind": "original", "data_dir": Path(data_dir).name, **files},
                       price_rule="original", price_seed=price_seed, nouns="heuristic", **kw)
