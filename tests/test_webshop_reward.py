"""The WebShop reward: each component, the original's quirks, the corrected mode."""

from __future__ import annotations

import pytest
from thefuzz import fuzz

from arlarena_envs.webshop.matching import normalize_color, token_set_ratio
from arlarena_envs.webshop.reward import attribute_reward, get_reward, option_reward, title_score, type_reward

PAIRS = [
    ("machine washable", "machine wash"),
    ("double sided", "Double-Sided Print"),
    ("r.brown2070", ("color", "r.brown2070")),
    (("size", "7"), "7"),
    ("café crème", "cafe creme"),
    ("Größe XL", "grosse xl"),
    ("", "anything"),
    ("28\" x 28\"", '28" x 28"'),
    ("high waist", "waist high"),
    ("1.6 ounce (pack of 1)", "1.6 oz"),
    ("日本 tea", "tea"),
]


@pytest.mark.parametrize("a,b", PAIRS)
def test_token_set_ratio_equals_thefuzz(a, b):
    assert token_set_ratio(a, b) == fuzz.token_set_ratio(a, b)


def test_normalize_color_first_substring_hit():
    assert normalize_color("standard") == "tan"
    assert normalize_color("lightweight") == "light"
    assert normalize_color("navy blue") == "blue"
    assert normalize_color("r.brown2070") == "brown"
    assert normalize_color("xl") == "xl"
    assert normalize_color(("color", "r.brown2070")) == ("color", "r.brown2070")  # tuple: element test


def _product(**kw):
    p = {
        "asin": "B000000001",
        "name": "Acme Throw Pillow Cover",
        "Title": "Acme Throw Pillow Cover",
        "BulletPoints": ["Soft fabric. ", "Hidden zipper"],
        "Description": "A pillow cover with printing technology.",
        "Attributes": ["double sided", "machine washable"],
        "query": "decorative pillows",
        "product_category": "Home & Kitchen \u203a Bedding \u203a Decorative Pillows",
    }
    p.update(kw)
    return p


def _goal(**kw):
    g = {
        "asin": "B000000001",
        "name": "Acme Throw Pillow Cover",
        "query": "decorative pillows",
        "product_category": "Home & Kitchen \u203a Bedding \u203a Decorative Pillows",
        "attributes": ["double sided", "machine washable", "printing technology"],
        "goal_options": {"size": '28" x 28"'},
        "price_upper": 30.0,
    }
    g.update(kw)
    return g


def test_attribute_reward_fuzzy_then_text_fallback():
    p = _product()
    r, n = attribute_reward(p, ["double sided", "machine wash", "printing technology", "hidden zipper", "waterproof"])
    # fuzzy: "double sided" exact, "machine wash" vs "machine washable" (token_set_ratio 86 > 85);
    # text: "printing technology" in Description, "hidden zipper" in BulletPoints; "waterproof" nowhere
    assert token_set_ratio("machine washable", "machine wash") > 85
    assert n == 4 and r == pytest.approx(0.8)


def test_attribute_threshold_is_strict():
    p = _product(Attributes=["abcdefghij"], Title="", BulletPoints=[], Description="")
    cand = "abcdefghijkl"  # similarity just around the threshold
    assert attribute_reward(p, [cand])[1] == (1 if token_set_ratio("abcdefghij", cand) > 85 else 0)


def test_option_reward_counts_goal_options_once_and_none_without_goals():
    r, n = option_reward(["navy blue", "large"], ["blue", "dark blue", "xl"])
    # "navy blue" and "dark blue" both normalise to "blue" (it precedes "dark" in COLOR_SET); "xl" unmatched
    assert n == 2 and r == pytest.approx(2 / 3)
    assert option_reward(["red"], []) == (None, 0)
    # one purchased option can satisfy several goal options
    assert option_reward(["blue"], ["blue", "navy blue"])[1] == 2


def test_option_tuple_quirk_and_corrected_mode():
    p = _product()
    g = _goal(attributes=["double sided"], goal_options={"color": "r.brown2070", "size": "7"})
    opts = {"color": "r.brown2070", "size": "7"}
    score, info = get_reward(p, g, 10.0, opts, ["pillow"], ["pillow"], mode="original")
    assert info["r_option"] == 0.5  # ('color', 'r.brown2070') vs 'brown' fails; ('size','7') vs '7' passes
    assert score == pytest.approx((1 + 1 + 1) / 4)
    score_c, info_c = get_reward(p, g, 10.0, opts, ["pillow"], ["pillow"], mode="corrected")
    assert info_c["r_option"] == 1.0 and score_c == 1.0


def test_human_goal_options_are_plain_strings():
    p = _product()
    g = _goal(attributes=["double sided"], goal_options=["woody scent"])
    _, info = get_reward(p, g, 10.0, {"scent": "woody scent"}, ["pillow"], ["pillow"])
    assert info["r_option"] == 1.0


def test_price_is_inclusive():
    p, g = _product(), _goal(goal_options={}, attributes=["double sided"])
    assert get_reward(p, g, 30.0, {}, ["x"], ["x"])[1]["r_price"] is True
    assert get_reward(p, g, 30.01, {}, ["x"], ["x"])[1]["r_price"] is False
    assert get_reward(p, g, 30.01, {}, ["x"], ["x"])[0] == pytest.approx(1 / 2)


def test_title_score_duplicates_and_empty():
    assert title_score(["pillow", "cover"], ["pillow", "pillow", "case"]) == pytest.approx(1 / 3)  # set of 1 over a list of 3
    assert title_score(["a"], []) == 0.2


def test_type_reward_order_and_override():
    p = _product()
    t = type_reward(p, _goal(), ["pillow"], ["pillow"])
    assert t == {"r_type": 1.0, "query_match": True, "category_match": True, "title_score": 1.0}
    other = _product(query="shoes", product_category="Clothing \u203a Shoes")
    assert type_reward(other, _goal(), ["shoe"], ["pillow", "cover", "case", "acme"])["r_type"] == 0.0
    assert type_reward(other, _goal(), ["pillow"], ["pillow", "cover", "case", "acme", "x"])["r_type"] == 0.5  # 0.2, no match
    assert type_reward(other, _goal(), ["pillow"], ["pillow"] + ["w"] * 10)["r_type"] == 0.1  # 1/11 < 0.1
    # the override beats a query match in the original, not in corrected mode
    same_query = _product(product_category="Other \u203a Stuff")
    assert type_reward(same_query, _goal(), ["zzz"], ["pillow"])["r_type"] == 0.0
    assert type_reward(same_query, _goal(), ["zzz"], ["pillow"], mode="corrected")["r_type"] == 1.0
    # category match needs two shared levels
    one_level = _product(query="x", product_category="Home & Kitchen \u203a Other")
    assert type_reward(one_level, _goal(), ["pillow"], ["pillow"])["category_match"] is False


def test_total_formula_and_weights():
    p = _product()
    g = _goal(goal_options={"size": '28" x 28"', "color": "grey"})
    score, info = get_reward(p, g, 20.0, {"size": '28" x 28"'}, ["pillow"], ["pillow", "cover"])
    d = 3 + 2 + 1
    assert info["w_att"] == pytest.approx(3 / d) and info["w_option"] == pytest.approx(2 / d) and info["w_price"] == pytest.approx(1 / d)
    # 3 attributes (2 fuzzy + 1 description), options: the size tuple ('size', '28" x 28"') -> '28 x 28' vs
    # purchased '28" x 28"' -> '28 x 28' matches; color tuple does not; price passes; r_type 1 (query match)
    assert info["r_att"] == 1.0 and info["r_option"] == 0.5
    assert score == pytest.approx((3 + 1 + 1) / d)
    assert set(info) == {"r_type", "r_att", "w_att", "query_match", "category_match", "title_score", "r_option", "w_option", "r_price", "w_price"}


def test_no_goal_options_has_no_option_keys():
    _, info = get_reward(_product(), _goal(goal_options={}), 1.0, {}, ["a"], ["a"])
    assert "r_option" not in info and "w_option" not in info
