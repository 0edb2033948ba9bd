"""Agreement of the heuristic noun tagger with a spaCy model on the original 1,000 products.

Needs the original data (../shared/data/webshop-1000 or $ARLARENA_WEBSHOP_DATA) and the
`webshop-spacy` extra. Prints: token-set agreement of the noun lists, and how often the native
reward (and success = reward 1.0) differs between the two taggers over (goal, purchase) pairs:
each test goal 0-499 with its target and the top-10 products of a search for its instruction,
every purchase with the goal's options where the product has them.

    python benchmarks/webshop_noun_agreement.py [DATA_DIR]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from arlarena_envs.webshop.nouns import heuristic_nouns, spacy_nouns_fn
from arlarena_envs.webshop.original import load_original_catalogue
from arlarena_envs.webshop.reward import get_reward

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    data = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ARLARENA_WEBSHOP_DATA", str(ROOT.parent / "shared/data/webshop-1000"))
    cat = load_original_catalogue(data)
    sp = spacy_nouns_fn("en_core_web_sm")
    names = sorted({p["name"] for p in cat.products})
    h = {n: heuristic_nouns(n) for n in names}
    s = {n: sp(n) for n in names}
    same_list = sum(h[n] == s[n] for n in names)
    jacc = sum(len(set(h[n]) & set(s[n])) / max(1, len(set(h[n]) | set(s[n]))) for n in names) / len(names)
    print(f"names: {len(names)}; identical noun lists: {same_list / len(names):.1%}; mean token-set Jaccard: {jacc:.3f}")
    pairs = diff_total = diff_success = diff_rtype = 0
    for k in range(500):
        goal = cat.goals[k]
        cands = {cat.by_asin[goal["asin"]]} | set(cat.search(goal["instruction_text"])[:10])
        for i in sorted(cands):
            p = cat.products[i]
            opts = {n: v for n, v in (goal["goal_options"].items() if isinstance(goal["goal_options"], dict) else []) if v in p["options"].get(n, ())}
            price = cat.prices[p["asin"]]
            r_h, i_h = get_reward(p, goal, price, opts, h[p["name"]], h[goal["name"]])
            r_s, i_s = get_reward(p, goal, price, opts, s[p["name"]], s[goal["name"]])
            pairs += 1
            diff_total += abs(r_h - r_s) > 1e-12
            diff_success += (r_h == 1.0) != (r_s == 1.0)
            diff_rtype += i_h["r_type"] != i_s["r_type"]
    print(f"(goal, purchase) pairs: {pairs}; reward differs: {diff_total / pairs:.2%}; r_type differs: {diff_rtype / pairs:.2%}; success differs: {diff_success / pairs:.2%}")


if __name__ == "__main__":
    main()
