"""The WebShop reward (`web_agent_site/engine/goal.py::get_reward`, princeton-nlp/WebShop 64fa2a5).

    D      = |goal.attributes| + |goal.goal_options| + 1
    total  = (n_att + n_opt + [price <= price_upper]) / D
    reward = total * r_type

* n_att: goal attributes g with `token_set_ratio(p, g) > 85` for some product attribute p,
  else g a substring of the lower-cased Title, joined BulletPoints or Description.
* n_opt: goal options g (after `normalize_color`) hit by some purchased option value p
  (after `normalize_color`) with `token_set_ratio(p, g) > 85`; each goal option counts once.
  In "original" mode a synthetic goal's options are `goal_options.items()`, i.e. `(name, value)`
  tuples, as the original passes them (see matching.py); "corrected" mode uses the values.
* r_type: query_match = same `query`; category_match = >= 2 shared `product_category` levels;
  title_score = |set(p_nouns) & set(g_nouns)| / len(g_nouns) (0.2 if g_nouns is empty).
  r_type = 1, or 0.5 if none of (query_match, category_match, title_score > 0.2); then,
  overriding, 0.1 if title_score < 0.1 and 0 if title_score == 0. "corrected" mode applies
  the override only when neither the query nor the category matches.
* w_att = |attributes| / D, w_option = |goal_options| / D, w_price = 1 / D. r_option / w_option
  are absent when the goal has no options.
"""

from __future__ import annotations

from typing import Any, Iterable, Literal, Mapping, Sequence

from arlarena_envs.errors import InvalidArgumentError
from arlarena_envs.webshop.matching import normalize_color, token_set_ratio

RewardMode = Literal["original", "corrected"]
MATCH_THRESHOLD = 85  # strictly greater than this counts as a match


def attribute_reward(product: Mapping[str, Any], goal_attrs: Sequence[str]) -> tuple[float, int]:
    """(r_att, n_att): fraction and number of goal attributes the product has (see module doc)."""
    title = product["Title"].lower()
    bullets = " ".join(product["BulletPoints"]).lower()
    desc = product["Description"].lower()
    n = 0
    for g in goal_attrs:
        if any(token_set_ratio(p, g) > MATCH_THRESHOLD for p in product["Attributes"]):
            n += 1
        elif g in title or g in bullets or g in desc:
            n += 1
    return (n / len(goal_attrs) if goal_attrs else 0.0), n


def option_reward(purchased: Sequence[str], goal_options: Iterable[Any]) -> tuple[float | None, int]:
    """(r_option, n_opt): goal options hit by a purchased option (None, 0 without goal options)."""
    p_opts = [normalize_color(o) for o in purchased]
    g_opts = [normalize_color(o) for o in goal_options]
    n = 0
    for g in g_opts:
        for p in p_opts:
            if token_set_ratio(p, g) > MATCH_THRESHOLD:
                n += 1
                break
    return (n / len(g_opts) if g_opts else None), n


def title_score(p_nouns: Sequence[str], g_nouns: Sequence[str]) -> float:
    """|set(p) & set(g)| / len(g) (duplicates in g count in the denominator); 0.2 if g is empty."""
    if not g_nouns:
        return 0.2
    return len(set(p_nouns) & set(g_nouns)) / len(g_nouns)


def type_reward(
    product: Mapping[str, Any], goal: Mapping[str, Any], p_nouns: Sequence[str], g_nouns: Sequence[str], mode: RewardMode = "original"
) -> dict[str, Any]:
    """r_type with its parts (query_match, category_match, title_score); see module doc."""
    query_match = product["query"] == goal["query"]
    p_cat = {x.strip() for x in product["product_category"].split("\u203a")}
    g_cat = {x.strip() for x in goal["product_category"].split("\u203a")}
    category_match = len(p_cat & g_cat) >= 2
    ts = title_score(p_nouns, g_nouns)
    r_type = 1.0
    if not (query_match or category_match or ts > 0.2):
        r_type = 0.5
    if mode == "original" or not (query_match or category_match):
        if ts < 0.1:
            r_type = 0.1
        if ts == 0.0:
            r_type = 0.0
    return {"r_type": r_type, "query_match": query_match, "category_match": category_match, "title_score": ts}


def get_reward(
    product: Mapping[str, Any],
    goal: Mapping[str, Any],
    price: float,
    options: Mapping[str, str],
    p_nouns: Sequence[str],
    g_nouns: Sequence[str],
    mode: RewardMode = "original",
) -> tuple[float, dict[str, Any]]:
    """The native reward in [0, 1] and the original's verbose info dict (see module doc)."""
    if mode not in ("original", "corrected"):
        raise InvalidArgumentError(f"reward mode must be 'original' or 'corrected', got {mode!r}")
    t = type_reward(product, goal, p_nouns, g_nouns, mode)
    r_price = price <= goal["price_upper"]
    r_att, n_att = attribute_reward(product, goal["attributes"])
    g_opts = goal["goal_options"]
    if isinstance(g_opts, Mapping):
        g_iter: Iterable[Any] = list(g_opts.items()) if mode == "original" else list(g_opts.values())
    else:
        g_iter = list(g_opts)
    r_option, n_opt = option_reward(list(options.values()), g_iter)
    d = len(goal["attributes"]) + len(g_opts) + 1
    total = (n_att + n_opt + r_price) / d
    total *= t["r_type"]
    info: dict[str, Any] = {
        "r_type": t["r_type"],
        "r_att": r_att,
        "w_att": len(goal["attributes"]) / d,
        "query_match": t["query_match"],
        "category_match": t["category_match"],
        "title_score": t["title_score"],
    }
    if r_option is not None:
        info["r_option"] = r_option
        info["w_option"] = len(g_opts) / d
    info["r_price"] = r_price
    info["w_price"] = 1 / d
    return total, info
