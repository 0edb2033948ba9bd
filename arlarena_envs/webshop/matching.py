"""Text normalisation and fuzzy matching exactly as the original WebShop reward uses them.

* `token_set_ratio(a, b)` equals `thefuzz.fuzz.token_set_ratio(a, b)` (thefuzz 0.22): both
  arguments go through `str()`, lose the code points 128-255 (thefuzz's `force_ascii`), then
  rapidfuzz's `default_process` (lower case, non-alphanumerics -> space, strip); the rapidfuzz
  score is rounded with Python's `round` and truncated to int. A tuple argument therefore
  scores as the text of `str(tuple)` -- the original's option-tuple quirk depends on it.
* `normalize_color(s)`: the first `COLOR_SET` entry that is a substring of `s`, else `s`
  (`'standard' -> 'tan'`, `'navy blue' -> 'blue'`). For a tuple `in` tests element equality.
"""

from __future__ import annotations

from typing import Any

from rapidfuzz.fuzz import token_set_ratio as _rf_token_set_ratio
from rapidfuzz.utils import default_process

# web_agent_site/engine/normalize.py COLOR_SET, in its order (the first substring hit wins)
COLOR_SET: tuple[str, ...] = (
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure",
    "banana", "beige", "black", "blue", "blush", "bordeaux", "bronze",
    "brown", "burgundy", "camel", "camo", "caramel", "champagne",
    "charcoal", "cheetah", "chestnut", "chocolate", "christmas", "coffee",
    "cognac", "copper", "coral", "cranberry", "cream", "crystal", "dark",
    "denim", "eggplant", "elephant", "espresso", "fuchsia", "gold", "granite",
    "grape", "graphite", "grass", "gray", "green", "grey", "heather", "indigo",
    "ivory", "ivy", "khaki", "lavender", "lemon", "leopard", "light", "lilac",
    "lime", "magenta", "maroon", "mauve", "merlot", "midnight", "mint", "mocha",
    "multicolor", "mushroom", "mustard", "natural", "navy", "nude", "olive",
    "orange", "peach", "pewter", "pink", "plum", "purple", "rainbow", "red",
    "rose", "royal", "rust", "sand", "sapphire", "seashell", "silver", "skull",
    "slate", "steel", "stone", "stonewash", "sunflower", "tan", "taupe", "teal",
    "tiger", "turquoise", "violet", "walnut", "wheat", "white", "wine", "yellow",
)  # fmt: skip

_LATIN1 = {i: None for i in range(128, 256)}  # thefuzz.utils.translation_table


def full_process(s: Any) -> str:
    """thefuzz's `full_process(s, force_ascii=True)`: str(), drop U+0080..U+00FF, default_process."""
    return default_process(str(s).translate(_LATIN1))


def token_set_ratio(a: Any, b: Any) -> int:
    """thefuzz.fuzz.token_set_ratio with its defaults (an int in 0..100)."""
    if a is None or b is None:
        return 0
    return int(round(_rf_token_set_ratio(full_process(a), full_process(b))))


def normalize_color(s: Any) -> Any:
    """The first COLOR_SET entry contained in `s` (substring for str, element for tuple), else s."""
    for color in COLOR_SET:
        if color in s:
            return color
    return s
