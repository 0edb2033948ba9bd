"""The loader for the original WebShop files: a fixture in the original format (always), and the
real 1,000-product data in ../shared/data/webshop-1000 (skipped when absent)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from arlarena_envs.errors import DataError
from arlarena_envs.registry import make
from arlarena_envs.webshop import pages
from arlarena_envs.webshop.original import (
    clean_pricing,
    generate_prices,
    load_original_catalogue,
    load_products,
    synthetic_goals,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "webshop-1000"
ORIG_ID = "arlarena/WebShop-original-v0"


def _raw(asin, name, pricing, options=None, **kw):
    p = {
        "asin": asin,
        "name": name,
        "full_description": f"Description of {name}.",
        "pricing": pricing,
        "images": [f"https://img/{asin}.jpg"],
        "product_category": "Home & Kitchen \u203a Bedding \u203a Pillows",
        "small_description": [f"{name} bullet one ", "bullet two"],
        "customization_options": options or "",
        "category": "garden",
        "query": "  Decorative PILLOWS ",
        "page": "1",
    }
    p.update(kw)
    return p


FIXTURE_PRODUCTS = [
    _raw("B000000001", "Acme Throw Pillow Cover", "$14.95", {"Size": [{"value": ' 16" x 16" ', "image": "i1"}, {"value": "Red/Blue", "image": None}]}),
    _raw("B000000002", "Bravo Pillow Insert", "$15.99 - $32.99"),
    _raw("nan", "Skipped", "$1.00"),
    _raw("B0000000031", "Too Long", "$1.00"),
    _raw("B000000001", "Duplicate", "$1.00"),
    _raw("B000000004", "Charlie Cushion", "", small_description="single bullet", customization_options={"Color": None}),
    _raw("B000000005", "Delta Shoe Rack", "$1,099.00", category="garden"),
]
FIXTURE_ATTRS = {
    "B000000001": {"attributes": ["double sided", "machine washable"], "instruction": "i want a double sided throw pillow cover", "instruction_attributes": ["double sided"]},
    "B000000002": {"attributes": [], "instruction": "find me a pillow insert", "instruction_attributes": ["pillow insert"]},
    "B000000005": {"attributes": ["easy assembly"], "instruction": "i need a shoe rack with easy assembly", "instruction_attributes": ["easy assembly"]},
}
FIXTURE_HUMAN = {
    "B000000001": [
        {"asin": "B000000001", "instruction": "i need a red pillow cover.", "instruction_attributes": ["double sided"], "instruction_options": ["red | blue"]},
        {"asin": "B000000001", "instruction": "skipped: no attributes", "instruction_attributes": [], "instruction_options": []},
    ]
}


@pytest.fixture()
def fixture_dir(tmp_path):
    (tmp_path / "items_shuffle_fixture.json").write_text(json.dumps(FIXTURE_PRODUCTS))
    (tmp_path / "items_ins_v2_fixture.json").write_text(json.dumps(FIXTURE_ATTRS))
    (tmp_path / "items_human_ins_fixture.json").write_text(json.dumps(FIXTURE_HUMAN))
    return tmp_path


def test_pricing_cleaning():
    assert clean_pricing("$14.95") == ([14.95], "$14.95")
    assert clean_pricing("$15.99 - $32.99") == ([15.99, 32.99], "$15.99 to $32.99")
    assert clean_pricing("$1,099.00") == ([1099.0], "$1099.0")
    assert clean_pricing("") == ([100.0], "$100.0")
    assert clean_pricing(None) == ([100.0], "$100.0")


def test_loader_cleaning_on_the_fixture():
    products = load_products(FIXTURE_PRODUCTS, FIXTURE_ATTRS)
    assert [p["asin"] for p in products] == ["B000000001", "B000000002", "B000000004", "B000000005"]
    a, b, c, d = products
    assert a["Title"] == "Acme Throw Pillow Cover" and a["Description"] == "Description of Acme Throw Pillow Cover."
    assert a["query"] == "decorative pillows" and a["Price"] == "$14.95" and a["pricing"] == [14.95]
    assert a["options"] == {"size": ['16" x 16"', "red | blue"]} and a["option_to_image"] == {'16" x 16"': "i1", "red | blue": None}
    assert a["Attributes"] == ["double sided", "machine washable"] and a["Rating"] == "N.A." and a["Reviews"] == []
    assert a["instruction_text"] == "i want a double sided throw pillow cover" and a["MainImage"] == "https://img/B000000001.jpg"
    assert b["Attributes"] == [] and b["Price"] == "$15.99 to $32.99"
    assert c["Attributes"] == ["DUMMY_ATTR"] and c["BulletPoints"] == ["single bullet"] and c["options"] == {}
    assert c["pricing"] == [100.0] and c["instruction_text"] is None
    assert FIXTURE_PRODUCTS[0]["query"] == "  Decorative PILLOWS "  # inputs untouched


def test_loader_round_trip_through_files(fixture_dir):
    cat = load_original_catalogue(
        fixture_dir, products_file="items_shuffle_fixture.json", attributes_file="items_ins_v2_fixture.json", human_file="items_human_ins_fixture.json"
    )
    again = load_products(json.loads((fixture_dir / "items_shuffle_fixture.json").read_text()), FIXTURE_ATTRS)
    assert cat.products == again
    # goals: one per option combination of each product with an instruction, seeded prices
    rng = random.Random(0)
    prices = generate_prices(again, rng)
    goals = synthetic_goals(again, prices, rng)
    assert sorted(map(json.dumps, cat.goals)) == sorted(map(json.dumps, goals))
    assert len(goals) == 2 + 1 + 1
    g = next(g for g in goals if g["asin"] == "B000000001" and g["goal_options"]["size"] == "red | blue")
    assert g["instruction_text"].startswith("i want a double sided throw pillow cover with size: red | blue, and price lower than ")
    assert 15.99 <= prices["B000000002"] <= 32.99
    big = next(g for g in goals if g["asin"] == "B000000005")
    assert big["price_upper"] == 1000000 and big["instruction_text"] == "i need a shoe rack with easy assembly"
    human = load_original_catalogue(
        fixture_dir, human_goals=True, products_file="items_shuffle_fixture.json", attributes_file="items_ins_v2_fixture.json", human_file="items_human_ins_fixture.json"
    )
    assert len(human.goals) == 1 and human.goals[0]["goal_options"] == ["red | blue"] and human.goals[0]["weight"] == 1
    assert human.goals[0]["instruction_text"].startswith("i need a red pillow cover, and price lower than")


def test_env_runs_on_the_fixture(fixture_dir):
    env = make(
        ORIG_ID,
        data_dir=str(fixture_dir),
        verify_data=False,
    ).unwrapped
    obs, info = env.reset(options={"split": "test", "task_index": 0})
    for _ in range(10):
        obs, r, term, trunc, info = env.step(env.oracle_action())
        if term:
            break
    assert term and info["extra"]["purchased_asin"] == env.goal["asin"]
    # splits follow the catalogue: the fixture's few goals are all test goals, there is no train
    n = len(env.catalogue.goals)
    assert env.n_tasks("test") == n < 500
    with pytest.raises(ValueError, match=rf"\[0, {n}\)"):
        env.reset(options={"split": "test", "task_index": 50})
    with pytest.raises(DataError, match="empty"):
        env.reset(options={"split": "train"})


def test_checksum_mismatch_is_a_data_error(fixture_dir):
    with pytest.raises(DataError, match="data check"):
        make(ORIG_ID, data_dir=str(fixture_dir))


def test_missing_data_dir_says_how_to_fix(monkeypatch):
    monkeypatch.delenv("ARLARENA_WEBSHOP_DATA", raising=False)
    with pytest.raises(DataError, match="data_dir"):
        make(ORIG_ID)


# ---------------------------------------------------------------- the real data (skipped without)

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/webshop-1000 not present")


@needs_shared
def test_raw_file_cleans_to_products_json():
    raw = json.loads((SHARED / "items_shuffle_1000.rebuilt.json").read_text())
    attrs = json.loads((SHARED / "items_ins_v2_1000.json").read_text())
    ours = load_products(raw, attrs)
    ref = json.loads((SHARED / "products.json").read_text())
    assert len(ours) == len(ref) == 1000
    for a, b in zip(ours, ref):
        assert a == b, a["asin"]


@needs_shared
def test_goals_equal_the_originals_in_order():
    cat = load_original_catalogue(SHARED)
    ref = json.loads((SHARED / "goals_synthetic.json").read_text())
    assert ref["random_seed_before_load_products"] == 0
    assert len(cat.goals) == len(ref["goals"]) == 6910
    for k, (g, r) in enumerate(zip(cat.goals, ref["goals"])):
        assert r["env_goal_index"] == k
        assert {key: g[key] for key in r if key != "env_goal_index"} == {key: v for key, v in r.items() if key != "env_goal_index"}
    prices = json.loads((SHARED / "product_prices.json").read_text())["prices"]
    assert cat.prices == prices
    human = load_original_catalogue(SHARED, human_goals=True)
    ref_h = json.loads((SHARED / "goals_human.json").read_text())
    assert human.goals == ref_h


def _episodes():
    if not SHARED.is_dir():
        return []
    out = []
    for fname, human in (("observations_synthetic.json", False), ("observations_human.json", True)):
        for ep in json.loads((SHARED / fname).read_text())["episodes"]:
            out.append(pytest.param(ep, human, id=f"{fname.split('_')[1][:5]}-{ep['observation_mode']}-{ep['env_goal_index']}"))
    return out


@needs_shared
@pytest.mark.parametrize("ep,human", _episodes())
def test_replay_recorded_episodes(ep, human):
    env = make(ORIG_ID, data_dir=str(SHARED), observation_mode=ep["observation_mode"], human_goals=human, reward_mode="score").unwrapped
    obs, info = env.reset(options={"split": "test", "task_index": ep["env_goal_index"]})
    steps = ep["steps"]
    assert obs == steps[0]["observation"]
    for rec in steps[1:]:
        obs, r, term, trunc, info = env.step(rec["action"])
        assert info["parse_status"] == "ok"
        want = rec["observation"]
        clickables = [c for c in rec["available_actions"]["clickables"] if c != "search"] if rec["available_actions"] else []
        if env.page != "results":
            assert obs == want, rec["action"]
            assert [a[6:-1] for a in info["admissible_actions"] if a.startswith("click[")] == clickables
            continue
        # results pages: same structure; the products both rankings show render identically
        sep = " [SEP] " if ep["observation_mode"] == "text" else "\n"
        assert obs.split(sep)[:5] == want.split(sep)[:5]
        theirs = {c for c in clickables if re.fullmatch(r"b[0-9a-z]{9}", c)}
        ours = {a[6:-1] for a in info["admissible_actions"] if re.fullmatch(r"b[0-9a-z]{9}", a[6:-1])}
        assert len(theirs) == len(ours) == 10
        assert len(theirs & ours) >= 8
        for asin in theirs & ours:
            p = env.catalogue.product(asin.upper())
            block = sep.join([p["asin"], p["Title"], p["Price"]]) if sep == " [SEP] " else f"[button] {p['asin']} [button_]\n{p['Title']}\n{p['Price']}\n"
            assert block in obs and block in want
    assert term and info["score"] == pytest.approx(ep["final_reward"])
    for key, value in ep["verbose_info"].items():
        if key != "title_score":  # nouns from the heuristic tagger, not spaCy (docs/webshop.md)
            assert info["extra"][key] == pytest.approx(value), key


@needs_shared
def test_tojson_matches_done_page():
    assert pages.tojson({"size": '28" x 28"'}) == '{"size": "28\\" x 28\\""}'
    assert pages.tojson({"b": "x", "a": "<y>'"}) == '{"a": "\\u003cy\\u003e\\u0027", "b": "x"}'
