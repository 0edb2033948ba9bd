"""The embedded catalogue: products and goals generated deterministically, no download.

`generate_catalogue(seed)` builds products of the original's shape (Title, Description,
BulletPoints, Attributes, options, pricing/Price, query, category, product_category) from
the product-type table below, with `random.Random(seed)`; then goals exactly as the
original's synthetic goals (one per option-value combination, instruction + " with name:
value" + price text, price bound from the first 4 multiples of 10 above the price), shuffled
with seed 233. The generator records which title words are nouns (`title_nouns`), so the type
reward needs no tagger here. Same seed and code -> same catalogue on every machine; its
checksum is in the spec's `data` and verified at first use.
"""

from __future__ import annotations

import random
from typing import Any

from arlarena_envs.webshop.catalogue import shuffle_goals
from arlarena_envs.webshop.original import synthetic_goals

# category -> [(query, product_category, head nouns, attribute pool, option schema, price lo..hi)]
_COLORS = ["black", "white", "navy blue", "grey", "red", "beige", "pink", "green", "brown", "purple"]
_SIZES = ["small", "medium", "large", "x-large", "xx-large"]
_SHOE = ["6", "7", "8", "8.5", "9", "10", "11", "12"]
_PACK = ["pack of 1", "pack of 2", "pack of 4", "pack of 6", "pack of 12"]
_OZ = ["1 fl oz", "2 fl oz", "3.4 fl oz", "8 fl oz"]
_FLAVORS = ["vanilla", "chocolate", "strawberry", "sea salt", "honey", "original", "lemon", "mint"]
_SCENTS = ["lavender", "unscented", "citrus", "woody scent", "vanilla", "fresh linen"]
_DIMS = ['16" x 16"', '18" x 18"', '20" x 20"', '24" x 24"']
_STYLES = ["modern", "classic", "rustic", "minimalist"]
_CAPACITY = ["32gb", "64gb", "128gb", "256gb"]

TYPES: dict[str, list[tuple[str, str, list[str], list[str], dict[str, list[str]], tuple[float, float]]]] = {
    "fashion": [
        ("men's running shoes", "Clothing, Shoes & Jewelry \u203a Men \u203a Shoes \u203a Athletic \u203a Running", ["Running Shoes", "Sneakers"], ["rubber sole", "lace up", "breathable mesh", "arch support", "non slip", "lightweight design", "memory foam", "machine washable"], {"color": _COLORS, "size": _SHOE}, (25, 120)),
        ("women's leggings", "Clothing, Shoes & Jewelry \u203a Women \u203a Clothing \u203a Active \u203a Leggings", ["Leggings", "Yoga Pants"], ["high waist", "tummy control", "butt lifting", "moisture wicking", "four way stretch", "hidden pocket", "squat proof", "machine wash"], {"color": _COLORS, "size": _SIZES}, (12, 45)),
        ("men's t-shirts", "Clothing, Shoes & Jewelry \u203a Men \u203a Clothing \u203a Shirts \u203a T-Shirts", ["T-Shirt", "Crew Neck Tee"], ["short sleeve", "cotton spandex", "regular fit", "button closure", "machine wash", "soft material", "classic fit"], {"color": _COLORS, "size": _SIZES}, (8, 35)),
        ("women's sandals", "Clothing, Shoes & Jewelry \u203a Women \u203a Shoes \u203a Sandals", ["Sandals", "Slides"], ["open toe", "ankle strap", "rubber sole", "arch support", "non slip", "memory foam", "faux leather"], {"color": _COLORS, "size": _SHOE}, (15, 70)),
        ("men's loafers & slip-ons", "Clothing, Shoes & Jewelry \u203a Men \u203a Shoes \u203a Loafers & Slip-Ons", ["Loafers", "Driving Shoes"], ["slip resistant", "rubber outsole", "genuine leather", "memory foam", "non slip", "lightweight design"], {"color": _COLORS, "size": _SHOE}, (25, 110)),
        ("women's dresses", "Clothing, Shoes & Jewelry \u203a Women \u203a Clothing \u203a Dresses", ["Dress", "Maxi Dress"], ["long sleeve", "v neck", "elastic waist", "polyester spandex", "hand wash", "loose fit", "button closure"], {"color": _COLORS, "size": _SIZES}, (18, 80)),
        ("baseball caps", "Clothing, Shoes & Jewelry \u203a Men \u203a Accessories \u203a Hats & Caps \u203a Baseball Caps", ["Baseball Cap", "Trucker Hat"], ["adjustable strap", "cotton twill", "sun protection", "breathable mesh", "hand wash"], {"color": _COLORS}, (9, 30)),
        ("wrist watches", "Clothing, Shoes & Jewelry \u203a Men \u203a Watches \u203a Wrist Watches", ["Watch", "Wrist Watch"], ["water resistant", "stainless steel", "quartz movement", "leather band", "easy read", "gift box"], {"color": _COLORS}, (20, 250)),
    ],
    "beauty": [
        ("deodorants", "Beauty & Personal Care \u203a Personal Care \u203a Deodorants & Antiperspirants \u203a Deodorants", ["Deodorant", "Deodorant Stick"], ["cruelty free", "aluminum free", "paraben free", "long lasting", "natural ingredients", "sensitive skin"], {"scent": _SCENTS, "size": _OZ}, (6, 25)),
        ("hair masks", "Beauty & Personal Care \u203a Hair Care \u203a Hair Masks", ["Hair Mask", "Hair Treatment"], ["dry hair", "hair growth", "damaged hair", "natural ingredients", "sulfate free", "argan oil", "deep conditioning"], {"size": _OZ}, (8, 40)),
        ("lipsticks", "Beauty & Personal Care \u203a Makeup \u203a Lips \u203a Lipstick", ["Lipstick", "Lip Color"], ["long lasting", "cruelty free", "highly pigmented", "paraben free", "matte finish", "easy apply"], {"color": ["red", "nude", "pink", "rose", "plum", "coral", "berry"]}, (5, 30)),
        ("face moisturizers", "Beauty & Personal Care \u203a Skin Care \u203a Face \u203a Creams & Moisturizers", ["Face Moisturizer", "Face Cream"], ["hyaluronic acid", "fine lines", "dry skin", "sensitive skin", "paraben free", "fragrance free", "anti aging"], {"size": _OZ}, (10, 60)),
        ("toothbrushes", "Beauty & Personal Care \u203a Oral Care \u203a Toothbrushes & Accessories \u203a Manual Toothbrushes", ["Toothbrush", "Toothbrushes"], ["oral hygiene", "soft bristles", "easy clean", "travel size", "sensitive teeth", "bpa free"], {"color": ["blue", "green", "pink", "white", "black"], "item package quantity": _PACK}, (3, 20)),
        ("nail polish", "Beauty & Personal Care \u203a Foot, Hand & Nail Care \u203a Nail Art & Polish \u203a Nail Polish", ["Nail Polish", "Gel Polish"], ["long lasting", "quick dry", "non toxic", "easy apply", "high gloss", "chip resistant"], {"color": ["red", "nude", "pink", "black", "white", "purple", "gold"]}, (4, 22)),
        ("hair dryers", "Beauty & Personal Care \u203a Hair Care \u203a Styling Tools \u203a Hair Dryers", ["Hair Dryer", "Blow Dryer"], ["fast drying", "low noise", "ionic technology", "heat settings", "travel size", "damaged hair"], {"color": ["black", "white", "pink", "rose gold"]}, (18, 120)),
        ("makeup brushes", "Beauty & Personal Care \u203a Tools & Accessories \u203a Makeup Brushes & Tools \u203a Brush Sets", ["Makeup Brushes", "Brush Set"], ["synthetic hair", "easy clean", "cruelty free", "travel case", "soft bristles"], {"color": ["black", "pink", "rose gold", "white"]}, (6, 35)),
    ],
    "electronics": [
        ("bluetooth headphones", "Electronics \u203a Headphones, Earbuds & Accessories \u203a Headphones \u203a Over-Ear Headphones", ["Headphones", "Wireless Headset"], ["noise cancelling", "long battery life", "hands free", "fast charging", "high fidelity", "built in microphone"], {"color": ["black", "white", "blue", "red"]}, (20, 200)),
        ("usb c cables", "Electronics \u203a Computers & Accessories \u203a Cables \u203a USB Cables", ["USB C Cable", "Charging Cord"], ["fast charging", "nylon braided", "high speed", "data transfer", "durable construction"], {"size": ["3 ft", "6 ft", "10 ft"], "item package quantity": _PACK}, (5, 25)),
        ("phone cases", "Cell Phones & Accessories \u203a Cases, Holsters & Sleeves \u203a Basic Cases", ["Phone Case", "Protective Cover"], ["shock absorbing", "wireless charging", "slim fit", "scratch resistant", "easy install", "raised edges"], {"color": _COLORS}, (6, 30)),
        ("memory cards", "Electronics \u203a Computers & Accessories \u203a Data Storage \u203a Memory Cards \u203a Micro SD Cards", ["Memory Card", "Micro SD Card"], ["high speed", "water resistant", "plug and play", "data transfer", "shock proof"], {"capacity": _CAPACITY}, (7, 60)),
        ("tv wall mounts", "Electronics \u203a Television & Video \u203a Accessories \u203a TV Mounts, Stands & Turntables \u203a TV Wall & Ceiling Mounts", ["TV Wall Mount", "Mount Bracket"], ["easy install", "heavy duty", "full motion", "cable management", "steel frame"], {"size": ["32-55 inch", "42-70 inch", "55-85 inch"]}, (20, 90)),
        ("portable speakers", "Electronics \u203a Portable Audio & Video \u203a Portable Speakers & Docks \u203a Portable Bluetooth Speakers", ["Speaker", "Bluetooth Speaker"], ["water resistant", "long battery life", "stereo sound", "hands free", "easy carry"], {"color": ["black", "blue", "red", "grey"]}, (18, 150)),
        ("wireless mice", "Electronics \u203a Computers & Accessories \u203a Computer Accessories & Peripherals \u203a Keyboards, Mice & Accessories \u203a Mice", ["Wireless Mouse", "Computer Mouse"], ["plug and play", "ergonomic design", "silent click", "long battery life", "usb receiver"], {"color": ["black", "white", "grey", "pink"]}, (8, 45)),
        ("hdmi cables", "Electronics \u203a Television & Video \u203a Accessories \u203a Cables \u203a HDMI Cables", ["HDMI Cable", "Video Cable"], ["high speed", "gold plated", "4k resolution", "nylon braided", "ethernet support"], {"size": ["3 ft", "6 ft", "10 ft", "15 ft"]}, (6, 30)),
    ],
    "garden": [
        ("decorative pillows", "Home & Kitchen \u203a Bedding \u203a Decorative Pillows, Inserts & Covers \u203a Throw Pillow Covers", ["Throw Pillow Cover", "Cushion Case"], ["double sided", "machine washable", "printing technology", "hidden zipper", "living room", "soft fabric"], {"size": _DIMS, "color": _COLORS}, (8, 40)),
        ("console tables", "Home & Kitchen \u203a Furniture \u203a Living Room Furniture \u203a Tables \u203a Sofa & Console Tables", ["Console Table", "Sofa Table"], ["solid wood", "easy assembly", "storage space", "living room", "metal frame", "engineered wood"], {"color": ["black", "white", "brown", "natural", "grey"]}, (60, 400)),
        ("window curtains", "Home & Kitchen \u203a Home D\u00e9cor \u203a Window Treatments \u203a Curtains & Drapes \u203a Panels", ["Curtains", "Window Panels"], ["blackout", "thermal insulated", "machine washable", "living room", "noise reducing", "grommet top"], {"color": _COLORS, "size": ['52" x 63"', '52" x 84"', '52" x 96"']}, (15, 70)),
        ("garden hoses", "Patio, Lawn & Garden \u203a Watering Equipment \u203a Garden Hoses", ["Garden Hose", "Water Hose"], ["leak proof", "heavy duty", "easy storage", "lightweight design", "kink free"], {"size": ["25 ft", "50 ft", "75 ft", "100 ft"]}, (18, 80)),
        ("wall clocks", "Home & Kitchen \u203a Home D\u00e9cor \u203a Clocks \u203a Wall Clocks", ["Wall Clock", "Clock"], ["silent movement", "battery operated", "easy read", "living room", "glass cover"], {"color": ["black", "white", "gold", "silver", "wood"]}, (12, 60)),
        ("bed sheets", "Home & Kitchen \u203a Bedding \u203a Sheets & Pillowcases \u203a Sheet & Pillowcase Sets", ["Sheet Set", "Bed Sheets"], ["deep pocket", "machine washable", "wrinkle free", "breathable cotton", "fade resistant"], {"color": _COLORS, "size": ["twin", "full", "queen", "king"]}, (20, 90)),
        ("patio chairs", "Patio, Lawn & Garden \u203a Patio Furniture & Accessories \u203a Patio Seating \u203a Chairs", ["Patio Chair", "Outdoor Chair"], ["weather resistant", "easy assembly", "steel frame", "heavy duty", "outdoor use"], {"color": ["black", "brown", "grey", "white", "blue"]}, (40, 220)),
        ("storage baskets", "Home & Kitchen \u203a Storage & Organization \u203a Baskets, Bins & Containers \u203a Storage Baskets", ["Storage Basket", "Storage Bin"], ["collapsible design", "sturdy handles", "easy clean", "living room", "cotton rope"], {"color": ["white", "grey", "beige", "brown"], "item package quantity": _PACK}, (10, 45)),
    ],
    "grocery": [
        ("crackers", "Grocery & Gourmet Food \u203a Snacks & Sweets \u203a Snack Foods \u203a Crackers", ["Crackers", "Cracker Crisps"], ["gluten free", "non gmo", "low calorie", "whole grain", "kosher certified"], {"flavor name": _FLAVORS, "size": _PACK}, (3, 35)),
        ("protein powders", "Grocery & Gourmet Food \u203a Beverages \u203a Protein Shakes", ["Protein Powder", "Protein Shake"], ["plant based", "gluten free", "soy free", "low sugar", "dairy free", "non gmo", "high protein"], {"flavor name": _FLAVORS}, (15, 60)),
        ("coffee beans", "Grocery & Gourmet Food \u203a Beverages \u203a Coffee, Tea & Cocoa \u203a Coffee \u203a Whole Coffee Beans", ["Coffee Beans", "Whole Bean Coffee"], ["medium roast", "dark roast", "fair trade", "usda organic", "single origin"], {"size": ["12 ounce", "2 pound", "5 pound"]}, (8, 45)),
        ("herbal tea", "Grocery & Gourmet Food \u203a Beverages \u203a Coffee, Tea & Cocoa \u203a Tea \u203a Herbal", ["Herbal Tea", "Tea Bags"], ["caffeine free", "usda organic", "non gmo", "gluten free", "natural ingredients"], {"flavor name": ["chamomile", "peppermint", "ginger", "hibiscus", "lemon"], "size": ["20 count", "40 count", "100 count"]}, (4, 30)),
        ("granola bars", "Grocery & Gourmet Food \u203a Snacks & Sweets \u203a Snack Foods \u203a Bars \u203a Granola Bars", ["Granola Bars", "Snack Bars"], ["gluten free", "high protein", "low sugar", "whole grain", "individually wrapped"], {"flavor name": _FLAVORS, "size": _PACK}, (5, 30)),
        ("olive oil", "Grocery & Gourmet Food \u203a Pantry Staples \u203a Cooking & Baking \u203a Oils \u203a Olive", ["Olive Oil", "Extra Virgin Olive Oil"], ["cold pressed", "non gmo", "usda organic", "gluten free", "first harvest"], {"size": ["16.9 fl oz", "25.3 fl oz", "33.8 fl oz"]}, (8, 50)),
        ("dark chocolate", "Grocery & Gourmet Food \u203a Snacks & Sweets \u203a Chocolate \u203a Chocolate Bars", ["Dark Chocolate", "Chocolate Bar"], ["fair trade", "low sugar", "dairy free", "gluten free", "individually wrapped"], {"flavor name": ["sea salt", "mint", "orange", "almond", "raspberry"], "size": _PACK}, (4, 35)),
        ("spices", "Grocery & Gourmet Food \u203a Pantry Staples \u203a Herbs, Spices & Seasonings \u203a Single Herbs & Spices", ["Spice", "Seasoning"], ["non gmo", "kosher certified", "usda organic", "no additives", "resealable bag"], {"flavor name": ["cinnamon", "turmeric", "paprika", "cumin", "black pepper"], "size": ["2 ounce", "8 ounce", "16 ounce"]}, (3, 25)),
    ],
}

_BRAND_A = ["Amber", "Birch", "Cobalt", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Ivy", "Juniper", "Kestrel", "Lumen", "Maple", "Nimbus", "Orchid", "Pinnacle", "Quartz", "Raven", "Sierra", "Tundra", "Umber", "Vista", "Willow", "Zephyr"]
_BRAND_B = ["Works", "Home", "Labs", "Goods", "Co", "Studio", "Supply", "Craft"]
_ADJ = ["Premium", "Classic", "Modern", "Deluxe", "Essential", "Everyday", "Ultra", "Pro", "Signature", "Comfort"]  # title adjectives (not nouns)
_EXTRA_NOUNS = ["Gift", "Edition", "Collection", "Series", "Set", "Bundle"]
_TEMPLATES = [
    "i am looking for {attrs} {query}",
    "i need {attrs} {query}",
    "find me {attrs} {query}",
    "i want to buy {query} that are {attrs}",
    "i'm looking for {query} with {attrs}",
    "please find {attrs} {query} for me",
]
PRODUCTS_PER_TYPE = 60


def _join_attrs(attrs: list[str]) -> str:
    return attrs[0] if len(attrs) == 1 else ", ".join(attrs[:-1]) + " and " + attrs[-1]


def _product(rng: random.Random, n: int, category: str, spec: tuple) -> dict[str, Any]:
    query, pcat, heads, pool, schema, (lo, hi) = spec
    brand = [rng.choice(_BRAND_A), rng.choice(_BRAND_B)]
    head = rng.choice(heads).split()
    adj = rng.choice(_ADJ)
    attrs = rng.sample(pool, rng.randint(3, min(5, len(pool))))
    extra = rng.choice(_EXTRA_NOUNS) if rng.random() < 0.3 else None
    # words and whether each is a noun (brand names are proper nouns, head words nouns)
    words = [(w, True) for w in brand] + [(adj, False)] + [(w, True) for w in head]
    feature = attrs[0].title()
    title = " ".join(w for w, _ in words) + f", {feature}" + (f" {extra}" if extra else "")
    nouns = [w.lower() for w, is_noun in words if is_noun] + ([extra.lower()] if extra else [])
    options: dict[str, list[str]] = {}
    names = sorted(schema)
    n_opts = rng.choice([0, 1, 1, 2, 2]) if len(names) > 1 else rng.choice([0, 1, 1])
    for name in sorted(rng.sample(names, min(n_opts, len(names)))):
        pool_v = schema[name]
        options[name] = rng.sample(pool_v, rng.randint(2, min(4, len(pool_v))))
    if rng.random() < 0.25:
        a = round(rng.uniform(lo, hi), 2)
        b = round(a * rng.uniform(1.1, 1.6), 2)
        pricing, price_tag = [a, b], f"${a} to ${b}"
    else:
        a = round(rng.uniform(lo, hi), 2)
        pricing, price_tag = [a], f"${a}"
    bullets = [f"{x.capitalize()}: designed for everyday use, this {head[-1].lower()} is {x}. " for x in attrs]
    desc = f"{' '.join(brand)} {' '.join(head)} made for {query}. " + " ".join(f"{x.capitalize()}." for x in attrs[1:])
    ins_attrs = rng.sample(attrs, rng.randint(1, min(3, len(attrs))))
    instruction = rng.choice(_TEMPLATES).format(attrs=_join_attrs(ins_attrs), query=query)
    return {
        "asin": f"E{n:09d}",
        "name": title,
        "Title": title,
        "title_nouns": nouns,
        "Description": desc,
        "BulletPoints": bullets,
        "Attributes": attrs,
        "options": options,
        "pricing": pricing,
        "Price": price_tag,
        "Rating": "N.A.",
        "Reviews": [],
        "query": query,
        "category": category,
        "product_category": pcat,
        "instruction_text": instruction,
        "instruction_attributes": ins_attrs,
    }


def generate_products(seed: int = 0, per_type: int = PRODUCTS_PER_TYPE) -> list[dict[str, Any]]:
    """All products, in a seeded shuffled order (as items_shuffle)."""
    rng = random.Random(seed)
    out = []
    n = 0
    for category in sorted(TYPES):
        for spec in TYPES[category]:
            for _ in range(per_type):
                out.append(_product(rng, n, category, spec))
                n += 1
    rng.shuffle(out)
    return out


def generate_catalogue_data(seed: int = 0, per_type: int = PRODUCTS_PER_TYPE) -> tuple[list[dict], list[dict], dict[str, float]]:
    """(products, goals in fixed order, prices) of the embedded catalogue."""
    products = generate_products(seed, per_type)
    rng = random.Random(seed + 1)
    prices = {p["asin"]: (p["pricing"][0] if len(p["pricing"]) == 1 else round(rng.uniform(*p["pricing"]), 2)) for p in products}
    # goals are built exactly as the original builds synthetic goals (one per option combination)
    goals = synthetic_goals(products, prices, rng)
    return products, shuffle_goals(goals), prices


def embedded_checksum(products: list[dict], goals: list[dict], prices: dict[str, float]) -> str:
    from arlarena_envs.webshop.catalogue import checksum

    return checksum({"products": products, "goals": goals, "prices": prices})


def load_embedded_catalogue(
    seed: int = 0, per_type: int = PRODUCTS_PER_TYPE, expected_sha256: str | None = None, cache_dir: str | None = None
):
    """The embedded catalogue, built once per process (checksum verified when given).

    With `cache_dir` (or $ARLARENA_WEBSHOP_CACHE) the generated data is also kept on disk as JSON
    and read back by later processes; a cached file that fails the checksum is regenerated."""
    import json
    import os
    from pathlib import Path

    from arlarena_envs.errors import DataError
    from arlarena_envs.webshop.catalogue import Catalogue, cached

    cache_dir = cache_dir or os.environ.get("ARLARENA_WEBSHOP_CACHE")

    def generate() -> tuple[list, list, dict, str]:
        products, goals, prices = generate_catalogue_data(seed, per_type)
        return products, goals, prices, embedded_checksum(products, goals, prices)

    def build() -> Catalogue:
        data = None
        path = Path(cache_dir) / f"webshop-embedded-{seed}-{per_type}.json" if cache_dir else None
        if path is not None and path.is_file():
            try:
                d = json.loads(path.read_text(encoding="utf-8"))
                sha = embedded_checksum(d["products"], d["goals"], d["prices"])
                if expected_sha256 is None or sha == expected_sha256:
                    data = (d["products"], d["goals"], d["prices"], sha)
            except (OSError, ValueError, KeyError):
                data = None  # unreadable cache: regenerate below
        if data is None:
            data = generate()
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps({"products": data[0], "goals": data[1], "prices": data[2]}), encoding="utf-8")
                os.replace(tmp, path)
        products, goals, prices, sha = data
        if expected_sha256 is not None and sha != expected_sha256:
            raise DataError(
                f"the embedded WebShop catalogue (seed={seed}, per_type={per_type}) hashes to {sha}, "
                f"not the spec's {expected_sha256}: the generator changed; bump the env version and "
                "record the new checksum in the spec's data"
            )
        return Catalogue(name=f"embedded:{seed}:{per_type}", products=products, goals=goals, prices=prices, identity=sha)

    return cached(("embedded", seed, per_type, expected_sha256), build)
