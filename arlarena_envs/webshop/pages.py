"""The original WebShop pages as text: the text nodes each page's HTML shows, and the two
text renderings of `WebAgentTextEnv` (`text`: nodes stripped and joined with ' [SEP] ';
`text_rich`: [button] / [clicked button] markers and "You have clicked x." lines).

A page is a list of `(text, kind)` nodes, kind in {"text", "button", "label", "link"}
(labels are option radio buttons, links are product ASINs), in document order, with the raw
whitespace the original templates produce (text_rich keeps it).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

PRODUCT_WINDOW = 10
Node = tuple[str, str]


def search_page(instruction: str) -> list[Node]:
    return [("WebShop", "text"), ("Instruction: ", "text"), (instruction, "text"), ("Search", "button")]


def results_page(instruction: str, products: Sequence[Mapping[str, Any]], page: int, total: int) -> list[Node]:
    nodes: list[Node] = [("Instruction:", "text"), (instruction, "text"), ("Back to Search", "button")]
    nodes.append((f"Page {page} (Total results: {total})", "text"))
    if page > 1:
        nodes.append(("< Prev", "button"))
    if page * PRODUCT_WINDOW < total:
        nodes.append(("Next >", "button"))
    for p in products:
        nodes += [(p["asin"], "link"), (p["Title"], "text"), (p["Price"], "text")]
    return nodes


def item_page(instruction: str, product: Mapping[str, Any], show_attrs: bool = False) -> list[Node]:
    nodes: list[Node] = [("Instruction:", "text"), (instruction, "text"), ("Back to Search", "button"), ("< Prev", "button")]
    for name, values in product["options"].items():
        nodes.append((name, "text"))
        nodes += [(v, "label") for v in values]
    nodes += [(product["Title"], "text"), (f"Price: {product['Price']}", "text"), (f"Rating: {product['Rating']}", "text")]
    nodes += [("Description", "button"), ("Features", "button"), ("Reviews", "button")]
    if show_attrs:
        nodes.append(("Attributes", "button"))
    nodes.append(("Buy Now", "button"))
    return nodes


def sub_page(instruction: str, product: Mapping[str, Any], sub: str) -> list[Node]:
    nodes: list[Node] = [("Instruction:", "text"), (instruction, "text"), ("Back to Search", "button"), ("< Prev", "button")]
    if sub == "Description":
        nodes.append((product["Description"], "text"))
    elif sub == "Features":
        nodes += [(" " + b, "text") for b in product["BulletPoints"]]
    elif sub == "Reviews":
        for r in product.get("Reviews") or ():
            nodes += [(f'"{r.get("title", "")}"', "text"), (str(r.get("score", "")), "text"), (str(r.get("body", "")), "text")]
    elif sub == "Attributes":
        nodes += [(str(a), "text") for a in product["Attributes"]]
    return nodes


def tojson(obj: Any) -> str:
    """Flask's `tojson` filter: sorted keys, HTML-unsafe characters escaped."""
    s = json.dumps(obj, sort_keys=True)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("'", "\\u0027")


def done_page(asin: str, options: Mapping[str, str], reward: float) -> list[Node]:
    texts = [
        "Thank you for shopping with us!", "Your code: ", "None", " (Paste it in your MTurk interface.)",
        "Purchased", "asin", asin, "options", tojson(dict(options)), "attrs", "None", "category", "None",
        "query", "None", "product category", "None", "Target", "asin", "options", "attrs", "price upper",
        "instuction text", "category", "product category", "query", "Goal ", "None", "Reward",
        "Your score (min 0.0, max 1.0)", str(reward), "Reward Details ", "None",
    ]  # fmt: skip
    return [(t, "text") for t in texts]


def _visible(nodes: Iterable[Node]) -> list[Node]:
    # BeautifulSoup yields no empty strings; the original skips nodes equal to '\n'
    return [(t, k) for t, k in nodes if t and t != "\n"]


def render_text(nodes: Iterable[Node]) -> str:
    """`text` mode: ' [SEP] '.join(node.strip())."""
    return " [SEP] ".join(t.strip() for t, _ in _visible(nodes))


def render_text_rich(nodes: Iterable[Node], url: str, clicked_asins: Iterable[str]) -> str:
    """`text_rich` mode, as the original's convert_html_to_text(simple=False).

    An option counts as clicked when '"value"' occurs in the page URL (the JSON of the chosen
    options), so values with quotes or non-ASCII characters never show as clicked, as in the
    original."""
    clicked = set(clicked_asins)
    obs = ""
    for t, kind in _visible(nodes):
        if kind == "button":
            s = f"[button] {t} [button_]"
        elif kind == "label":
            if f'"{t}"' in url:
                s = f"  [clicked button] {t} [clicked button_]"
                obs = f"You have clicked {t}.\n" + obs
            else:
                s = f"  [button] {t} [button_]"
        elif kind == "link":
            s = f"\n[clicked button] {t} [clicked button_]" if t in clicked else f"\n[button] {t} [button_]"
        else:
            s = t
        obs += s + "\n"
    return obs


def clickables(nodes: Iterable[Node]) -> dict[str, tuple[str, str]]:
    """Lower-cased clickable text -> (raw text, kind), in the original's order: buttons, then
    product links, then option values (a later entry with the same key wins)."""
    nodes = list(nodes)
    out: dict[str, tuple[str, str]] = {}
    for kind in ("button", "link"):
        for t, k in nodes:
            if k == kind:
                out[t.lower()] = (t, k)
    for t, k in nodes:
        if k == "label":
            out[t] = (t, k)
    return out
