"""Loader for the original WebShop data files (princeton-nlp/WebShop format).

    items_shuffle*.json        raw products (list of dicts: asin, name, full_description, pricing,
                               small_description, customization_options, images, category, query,
                               product_category, ...)
    items_ins_v2*.json         asin -> {attributes, instruction, instruction_attributes}
    items_human_ins*.json      asin -> [ {instruction, instruction_attributes, instruction_options}, ...]

`load_products` applies the original `load_products` cleaning (skip 'nan', >10-char and duplicate
ASINs; query lower-cased and stripped; pricing split on '$', stripped to [0-9.], Decimal -> float,
first two kept; Price "$x" / "$x to $y", [100.0] / "$100.0" without a price; option names
lower-cased, values `.strip().replace('/', ' | ').lower()`; BulletPoints = small_description;
Attributes from items_ins_v2, ['DUMMY_ATTR'] for an absent ASIN).

Prices and price bounds: the original draws them from the global `random` without a seed, so
they change at every server start. Here they come from `random.Random(price_seed)` (default 0,
recorded in the spec): range prices `uniform(lo, hi)` in product order, then each goal's bound
from the same stream, exactly as the original after `random.seed(price_seed)`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import random
import re
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence

from arlarena_envs.errors import DataError
from arlarena_envs.webshop.catalogue import Catalogue, cached, checksum, price_upper_for, shuffle_goals

DATA_ENV_VAR = "ARLARENA_WEBSHOP_DATA"
PRODUCT_GLOBS = ("items_shuffle_1000.json", "items_shuffle_1000.rebuilt.json", "items_shuffle.json", "items_shuffle*.json")
ATTR_GLOBS = ("items_ins_v2_1000.json", "items_ins_v2.json", "items_ins_v2*.json")
HUMAN_GLOBS = ("items_human_ins.json", "items_human_ins*.json")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read WebShop data file {path}: {e}") from e


def clean_pricing(pricing: Any) -> tuple[list[float], str]:
    """The original's pricing cleaning -> (pricing list, Price tag)."""
    if pricing is None or not pricing:
        return [100.0], "$100.0"
    values = [float(Decimal(re.sub(r"[^\d.]", "", part))) for part in pricing.split("$")[1:]]
    if len(values) == 1:
        return values, f"${values[0]}"
    return values[:2], f"${values[0]} to ${values[1]}"


def load_products(
    raw_products: Sequence[dict[str, Any]],
    attributes: dict[str, Any],
    human_attributes: dict[str, Any] | None = None,
    reviews: dict[str, tuple[list, Any]] | None = None,
    human_goals: bool = False,
    num_products: int | None = None,
) -> list[dict[str, Any]]:
    """The original `load_products` cleaning (module doc); returns new dicts, inputs untouched."""
    products = copy.deepcopy(list(raw_products[:num_products] if num_products else raw_products))
    reviews = reviews or {}
    out, seen = [], set()
    for p in products:
        asin = p["asin"]
        if asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        p["Title"] = p["name"]
        p["Description"] = p["full_description"]
        revs, rating = reviews.get(asin, ([], "N.A."))
        p["Reviews"] = copy.deepcopy(revs)
        p["Rating"] = rating
        for r in p["Reviews"]:
            if "score" not in r:
                r["score"] = r.pop("stars")
            if "review" not in r:
                r["body"] = ""
            else:
                r["body"] = r.pop("review")
        sd = p["small_description"]
        p["BulletPoints"] = sd if isinstance(sd, list) else [sd]
        p["pricing"], p["Price"] = clean_pricing(p.get("pricing"))
        options: dict[str, list[str]] = {}
        option_to_image: dict[str, Any] = {}
        for name, contents in (p.get("customization_options") or {}).items():
            if contents is None:
                continue
            values = []
            for c in contents:
                v = c["value"].strip().replace("/", " | ").lower()
                values.append(v)
                option_to_image[v] = c.get("image", None)
            options[name.lower()] = values
        p["options"] = options
        p["option_to_image"] = option_to_image
        entry = attributes.get(asin)
        p["Attributes"] = entry["attributes"] if entry is not None and "attributes" in entry else ["DUMMY_ATTR"]
        if human_goals:
            if human_attributes and asin in human_attributes:
                p["instructions"] = human_attributes[asin]
        else:
            p["instruction_text"] = (entry or {}).get("instruction", None)
            p["instruction_attributes"] = (entry or {}).get("instruction_attributes", None)
        p["MainImage"] = p["images"][0]
        p["query"] = p["query"].lower().strip()
        out.append(p)
    return out


def generate_prices(products: Sequence[dict[str, Any]], rng: random.Random) -> dict[str, float]:
    """The original `generate_product_prices`: pricing[0], or uniform(lo, hi) for a range."""
    prices = {}
    for p in products:
        pricing = p["pricing"]
        if not pricing:
            price = 100.0
        elif len(pricing) == 1:
            price = pricing[0]
        else:
            price = rng.uniform(*pricing[:2])
        prices[p["asin"]] = price
    return prices


def goal_record(p: dict[str, Any], goal_options: dict[str, Any], upper: float | int, price_text: str) -> dict[str, Any]:
    """One goal of product `p` as the original builds it: the instruction text with the chosen
    options and the price bound appended."""
    option_text = ", and ".join(f"{k}: {v}" for k, v in goal_options.items())
    option_text = " with " + option_text if option_text else ""
    return {
        "asin": p["asin"],
        "category": p["category"],
        "query": p["query"],
        "name": p["Title"],
        "product_category": p["product_category"],
        "instruction_text": f"{p['instruction_text']}{option_text}{price_text}",
        "attributes": p["instruction_attributes"],
        "price_upper": upper,
        "goal_options": goal_options,
    }


def synthetic_goals(products: Sequence[dict[str, Any]], prices: dict[str, float], rng: random.Random) -> list[dict[str, Any]]:
    """The original `get_synthetic_goals` (unshuffled): one goal per option-value combination."""
    goals = []
    cnt_atts: dict[str, int] = defaultdict(int)
    for p in products:
        if p.get("instruction_text") is None:
            continue
        attrs = p["instruction_attributes"]
        if not attrs:
            raise DataError(f"product {p['asin']} has an instruction but no instruction_attributes")
        upper, price_text = price_upper_for(prices[p["asin"]], rng)
        names = sorted(p["options"])
        for combo in itertools.product(*(p["options"][n] for n in names)):
            goals.append(goal_record(p, dict(zip(names, combo)), upper, price_text))
            for a in attrs:
                cnt_atts[a] += 1
    for g in goals:
        g["weight"] = sum(1.0 / cnt_atts[a] for a in g["attributes"]) / len(g["attributes"])
    return goals


def human_goals_from(products: Sequence[dict[str, Any]], prices: dict[str, float], rng: random.Random) -> list[dict[str, Any]]:
    """The original `get_human_goals` (unshuffled); instructions without attributes are skipped."""
    goals = []
    for p in products:
        for ins in p.get("instructions", ()):
            attrs = ins["instruction_attributes"]
            if len(attrs) == 0:
                continue
            upper, price_text = price_upper_for(prices[p["asin"]], rng)
            goals.append(
                {
                    "asin": p["asin"],
                    "category": p["category"],
                    "query": p["query"],
                    "name": p["name"],
                    "product_category": p["product_category"],
                    "instruction_text": ins["instruction"].strip(".") + price_text,
                    "attributes": attrs,
                    "price_upper": upper,
                    "goal_options": ins["instruction_options"],
                    "weight": 1,
                }
            )
    return goals


def _find(data_dir: Path, patterns: Sequence[str]) -> Path | None:
    for pat in patterns:
        hits = sorted(data_dir.glob(pat))
        if hits:
            return hits[0]
    return None


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """`data_dir`, else $ARLARENA_WEBSHOP_DATA; a DataError says how to provide it."""
    d = data_dir or os.environ.get(DATA_ENV_VAR)
    if not d:
        raise DataError(
            "WebShop original data: pass data_dir=<folder with items_shuffle_1000.json and "
            f"items_ins_v2_1000.json> to gym.make, or set ${DATA_ENV_VAR}"
        )
    path = Path(d).expanduser()
    if not path.is_dir():
        raise DataError(f"WebShop data_dir {path} is not a folder")
    return path


def load_original_catalogue(
    data_dir: str | os.PathLike | None,
    *,
    human_goals: bool = False,
    price_seed: int = 0,
    nouns: str = "heuristic",
    spacy_model: str = "en_core_web_sm",
    expected: dict[str, str] | None = None,
    products_file: str | None = None,
    attributes_file: str | None = None,
    human_file: str | None = None,
) -> Catalogue:
    """The catalogue of the original files in `data_dir` (cached per process).

    `expected` maps check names to sha256 values (the spec's `data`): "products" is the hash of
    the cleaned products (the true raw file and the rebuilt one clean alike), "attributes" the
    attribute file's bytes, "goals" the goals (synthetic or human) in order; a mismatch raises
    DataError."""
    from arlarena_envs.webshop.nouns import noun_function

    root = resolve_data_dir(data_dir)
    p_path = root / products_file if products_file else _find(root, PRODUCT_GLOBS)
    a_path = root / attributes_file if attributes_file else _find(root, ATTR_GLOBS)
    h_path = root / human_file if human_file else _find(root, HUMAN_GLOBS)
    if p_path is None or not p_path.is_file() or a_path is None or not a_path.is_file():
        raise DataError(f"{root} must hold items_shuffle*.json and items_ins_v2*.json (the original WebShop files)")
    if human_goals and (h_path is None or not h_path.is_file()):
        raise DataError(f"human_goals=True needs items_human_ins*.json in {root}")
    key = ("original", str(p_path.resolve()), str(a_path.resolve()), str(h_path) if human_goals else None, human_goals, price_seed, nouns, spacy_model, tuple(sorted((expected or {}).items())))

    def build() -> Catalogue:
        raw = _read_json(p_path)
        attrs = _read_json(a_path)
        human = _read_json(h_path) if human_goals and h_path else None
        products = load_products(raw, attrs, human, human_goals=human_goals)
        rng = random.Random(price_seed)
        prices = generate_prices(products, rng)
        goals = human_goals_from(products, prices, rng) if human_goals else synthetic_goals(products, prices, rng)
        goals = shuffle_goals(goals)
        sums = {"attributes": file_sha256(a_path), "products": checksum(_products_for_checksum(products)), "goals": checksum(goals)}
        for name, want in (expected or {}).items():
            if name in sums and sums[name] != want:
                raise DataError(
                    f"WebShop data check {name!r} failed for {root}: sha256 {sums[name]} != {want} "
                    "(not the original 1,000-product files, or a different price_seed)"
                )
        return Catalogue(
            name=f"original:{p_path.name}",
            products=products,
            goals=goals,
            prices=prices,
            noun_fn=noun_function(nouns, spacy_model),
            identity=sums["products"],
        )

    return cached(key, build)


def _products_for_checksum(products: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fields the env uses (the raw file's extra keys may differ between sources)."""
    keys = ("asin", "Title", "Description", "BulletPoints", "Attributes", "options", "pricing", "Price", "query", "category", "product_category")
    return [{k: p.get(k) for k in keys} for p in products]


