"""Streamed product sources for the on-disk catalogue: the embedded generator at any size and the
original full-size files, one cleaned product at a time (nothing holds the whole catalogue).

* `generated_products(n, seed)`: product j is `generator._product` drawn with its own
  `random.Random((seed << 32) | j)` (type `j`-th draw of that RNG over the 40 product types), so
  any product can be produced without the ones before it and memory stays flat at any n.
* `original_products(data_dir)`: items_shuffle*.json (one JSON array) parsed incrementally with
  `json.JSONDecoder.raw_decode` over a sliding buffer; items_ins_v2*.json (one JSON object
  asin -> entry) streamed the same way into a temporary SQLite table, so the join by ASIN needs
  no 16 GB dict; each product then goes through the original cleaning (`original.load_products`).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterator

from arlarena_envs.errors import DataError, InvalidArgumentError
from arlarena_envs.webshop.generator import TYPES, _product
from arlarena_envs.webshop.original import ATTR_GLOBS, PRODUCT_GLOBS, _find, load_products

_CHUNK = 1 << 20
_WS = " \t\r\n"


class _Stream:
    """A text file read in chunks, with a cursor into the current buffer."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, encoding="utf-8")
        self.buf = ""
        self.pos = 0
        self.eof = False

    def close(self) -> None:
        self._f.close()

    def more(self) -> bool:
        """Append the next chunk (dropping what was consumed); False at end of file."""
        if self.eof:
            return False
        chunk = self._f.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def skip_ws(self) -> str:
        """The next non-whitespace character ('' at end of file), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect(self, chars: str) -> str:
        c = self.skip_ws()
        if not c or c not in chars:
            raise DataError(f"{self.path}: expected one of {chars!r} at a JSON value boundary, found {c!r}: not a JSON file in the original WebShop format")
        self.pos += 1
        return c

    def value(self, decoder: json.JSONDecoder) -> Any:
        """Decode one JSON value at the cursor, reading more of the file until it is complete."""
        self.skip_ws()
        while True:
            try:
                obj, end = decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.more():
                    continue
                raise DataError(f"{self.path}: truncated or invalid JSON ({e}); re-download the original file") from e
            if end == len(self.buf) and not self.eof and not isinstance(obj, (dict, list, str)):
                # a number may continue in the next chunk
                if self.more():
                    continue
            self.pos = end
            return obj


def iter_json_array(path: str | os.PathLike) -> Iterator[Any]:
    """The elements of a file holding one JSON array, decoded one at a time."""
    s = _Stream(Path(path))
    dec = json.JSONDecoder()
    try:
        s.expect("[")
        if s.skip_ws() == "]":
            return
        while True:
            yield s.value(dec)
            if s.expect(",]") == "]":
                return
    finally:
        s.close()


def iter_json_object(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """The (key, value) pairs of a file holding one JSON object, decoded one pair at a time."""
    s = _Stream(Path(path))
    dec = json.JSONDecoder()
    try:
        s.expect("{")
        if s.skip_ws() == "}":
            return
        while True:
            key = s.value(dec)
            if not isinstance(key, str):
                raise DataError(f"{path}: object key {key!r} is not a string")
            s.expect(":")
            yield key, s.value(dec)
            if s.expect(",}") == "}":
                return
    finally:
        s.close()


# ---------------------------------------------------------------------- the embedded generator


_KINDS = [(category, spec) for category in sorted(TYPES) for spec in TYPES[category]]  # the 40 product types


def generated_product(j: int, seed: int = 0) -> dict[str, Any]:
    """Product j of the streamed generated catalogue (independent of every other product)."""
    rng = random.Random((seed << 32) | j)
    category, spec = _KINDS[rng.randrange(len(_KINDS))]
    return _product(rng, j, category, spec)


def generated_products(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Products 0..n-1 of the streamed generated catalogue."""
    if n < 1 or n > 999_999_999:
        raise InvalidArgumentError(f"products must be in [1, 999999999] (ASINs are E + 9 digits), got {n}")
    for j in range(n):
        yield generated_product(j, seed)


# ---------------------------------------------------------------------- the original files


class _AttributeTable:
    """items_ins_v2 asin -> entry, kept in a temporary SQLite file (the `.get` load_products uses)."""

    def __init__(self, path: Path, workdir: str | None = None):
        fd, self._db_path = tempfile.mkstemp(suffix=".sqlite", dir=workdir)
        os.close(fd)
        self._db = sqlite3.connect(self._db_path)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE a (asin TEXT PRIMARY KEY, entry TEXT)")
        batch: list[tuple[str, str]] = []
        for asin, entry in iter_json_object(path):
            batch.append((asin, json.dumps(entry, ensure_ascii=False)))
            if len(batch) >= 10_000:
                self._db.executemany("INSERT OR REPLACE INTO a VALUES (?, ?)", batch)
                batch.clear()
        self._db.executemany("INSERT OR REPLACE INTO a VALUES (?, ?)", batch)
        self._db.commit()

    def get(self, asin: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT entry FROM a WHERE asin = ?", (asin,)).fetchone()
        return json.loads(row[0]) if row else default

    def close(self) -> None:
        self._db.close()
        try:
            os.unlink(self._db_path)
        except OSError:
            pass


def original_products(
    data_dir: str | os.PathLike, *, products_file: str | None = None, attributes_file: str | None = None, workdir: str | None = None
) -> Iterator[dict[str, Any]]:
    """The cleaned products of the original files in `data_dir`, in file order, streamed.

    Same result as `original.load_products(json.load(items), json.load(attrs))`, one product at
    a time (synthetic goals only: human instructions are not read)."""
    root = Path(data_dir)
    p_path = root / products_file if products_file else _find(root, PRODUCT_GLOBS)
    a_path = root / attributes_file if attributes_file else _find(root, ATTR_GLOBS)
    if p_path is None or not p_path.is_file() or a_path is None or not a_path.is_file():
        raise DataError(f"{root} must hold items_shuffle*.json and items_ins_v2*.json (the original WebShop files)")
    table = _AttributeTable(a_path, workdir)
    seen: set[str] = set()
    try:
        batch: list[dict[str, Any]] = []
        for raw in iter_json_array(p_path):
            if not isinstance(raw, dict) or "asin" not in raw:
                raise DataError(f"{p_path}: every element must be a product object with an 'asin'")
            if raw["asin"] in seen:
                continue  # the original keeps the first product of an ASIN
            batch.append(raw)
            if len(batch) >= 1000:
                yield from _clean(batch, table, seen)
                batch = []
        yield from _clean(batch, table, seen)
    finally:
        table.close()


def _clean(batch: list[dict], table: _AttributeTable, seen: set[str]) -> Iterator[dict[str, Any]]:
    for p in load_products(batch, table):  # type: ignore[arg-type]  # only .get is used
        seen.add(p["asin"])
        yield p
