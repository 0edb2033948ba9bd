"""`ByteLRU`: a thread-safe least-recently-used cache bounded by entry count AND by bytes.

A count bound alone lets a few huge entries (a megabyte-long search query as key) hold
unbounded memory; every cache that stores caller-chosen text uses this one. Sizes are estimates
given by the caller (`size_of(key, value)`), cheap to compute and an upper bound in spirit:
`total_bytes = sum(size_of(k, v))` stays <= `max_bytes` after every insert (an entry larger
than `max_bytes` on its own is simply not cached).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING = object()


def text_bytes(text: str) -> int:
    """Upper-bound estimate of a str's memory: CPython's header plus up to 4 bytes a character."""
    return 64 + (len(text) if text.isascii() else 4 * len(text))


class ByteLRU(Generic[K, V]):
    def __init__(self, max_items: int, max_bytes: int, size_of: Callable[[K, V], int]):
        if max_items < 1 or max_bytes < 1:
            raise ValueError("ByteLRU needs max_items >= 1 and max_bytes >= 1")  # programming error
        self.max_items, self.max_bytes = max_items, max_bytes
        self._size_of = size_of
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.total_bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            got = self._data.get(key, _MISSING)  # type: ignore[arg-type]
            if got is _MISSING:
                return default
            self._data.move_to_end(key)
            return got[0]  # type: ignore[index]

    def put(self, key: K, value: V) -> None:
        size = int(self._size_of(key, value))
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.total_bytes -= old[1]
            if size > self.max_bytes:
                return
            self._data[key] = (value, size)
            self.total_bytes += size
            while len(self._data) > self.max_items or self.total_bytes > self.max_bytes:
                _, (_, s) = self._data.popitem(last=False)
                self.total_bytes -= s
                self.evictions += 1

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        got = self.get(key, _MISSING)  # type: ignore[arg-type]
        if got is not _MISSING:
            return got  # type: ignore[return-value]
        value = compute()
        self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.total_bytes = 0
