"""`UnicodeText`: a Gymnasium Text space that holds any unicode string (LLM text).

Gymnasium's `Text` accepts only characters of a fixed charset (alphanumeric by default). LLM
observations and responses need every character, so `contains` accepts any `str` up to
`max_length`; `sample` draws printable ASCII.

Gymnasium's AsyncVectorEnv copies Text observations out of shared memory once and then keeps
returning that first copy (python-deps.md). We register shared-memory handlers for
UnicodeText that store code points and read them back lazily on every access, so
`gym.make_vec(..., vectorization_mode="async")` returns the current observations.
"""

from __future__ import annotations

import multiprocessing as mp
import string
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.spaces import Text
from gymnasium.vector.utils import shared_memory as _shm

PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "


class UnicodeText(Text):
    """Any `str` of length in [min_length, max_length]."""

    _shared: dict[str, Any] = {}  # the charset tables of the first instance, shared by all

    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None):
        super().__init__(max_length=max_length, min_length=min_length, charset=PRINTABLE, seed=seed)
        # Gymnasium's Text builds a frozenset and a dict of numpy ints of its charset per
        # instance (~14 KiB); every env holds two spaces, a server thousands of envs. The tables
        # never change: every instance uses the first one's.
        names = ("_char_set", "_char_list", "_char_index", "_char_str")
        if not UnicodeText._shared:
            UnicodeText._shared = {name: getattr(self, name) for name in names if hasattr(self, name)}
        for name, value in UnicodeText._shared.items():
            setattr(self, name, value)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UnicodeText) and other.min_length == self.min_length and other.max_length == self.max_length


class _LiveTexts(Sequence):
    """The observations of n envs, decoded from shared memory at each access."""

    def __init__(self, space: UnicodeText, memory: Any, n: int):
        self._space, self._memory, self._n = space, memory, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(self._n)))
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        size = self._space.max_length + 1
        data = np.frombuffer(self._memory.get_obj(), dtype=np.int32)[i * size : (i + 1) * size]
        length = int(data[0])
        return "".join(map(chr, data[1 : 1 + length].tolist()))

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)

    def __eq__(self, other: Any) -> bool:
        return tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return repr(tuple(self))


@_shm.create_shared_memory.register(UnicodeText)
def _create(space: UnicodeText, n: int = 1, ctx: Any = mp):
    return ctx.Array(np.dtype(np.int32).char, n * (space.max_length + 1))


@_shm.read_from_shared_memory.register(UnicodeText)
def _read(space: UnicodeText, shared_memory: Any, n: int = 1):
    return _LiveTexts(space, shared_memory, n)


@_shm.write_to_shared_memory.register(UnicodeText)
def _write(space: UnicodeText, index: int, values: str, shared_memory: Any) -> None:
    size = space.max_length + 1
    codes = np.fromiter((ord(c) for c in values[: space.max_length]), dtype=np.int32)
    dest = np.frombuffer(shared_memory.get_obj(), dtype=np.int32)
    dest[index * size] = len(codes)
    dest[index * size + 1 : index * size + 1 + len(codes)] = codes
