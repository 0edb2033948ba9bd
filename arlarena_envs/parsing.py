"""Action parsing shared by every env: `<think>...</think><action>...</action>` responses.

`parse_response` is pure: text in, `ParsedAction` out. It never raises on any string (empty,
megabytes long, binary garbage, unicode, nested or duplicated tags).

Status precedence (the first that applies wins):
  empty               the response is blank
  language_violation  strict mode only: CJK characters anywhere (the paper's format rule)
  no_tag              no <action> block (or a closing tag without its opening tag)
  multiple_actions    more than one <action> or </action> tag (duplicated or nested blocks)
  truncated           an <action> (or, strict, <think>) tag is opened and never closed,
                      or the response was cut at `max_chars` and did not parse
  no_tag              strict mode: <think> missing/duplicated, or text outside the two blocks
  empty               <action></action> holds only whitespace
  inadmissible        the action is not in `admissible` (when a list is given); in an env, also an
                      action the env refuses by its own bounds (a WebShop `search[...]` longer
                      than MAX_QUERY_CHARS): env-specific limits map here, not to new statuses
  ok

Whenever one action block can be located, `action` carries its content even if the status is
not ok: the reference projection executes such actions (flagged invalid) under the penalty
policy; the env decides (see core.TextEnv).
"""

from __future__ import annotations

import re
from typing import Sequence

from arlarena_envs.contract import ParseMode, ParsedAction, ParseStatus

_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_STRICT = re.compile(r"^\s*<think>(.*?)</think>\s*<action>(.*?)</action>\s*$", re.IGNORECASE | re.DOTALL)


def _has_content(s: str) -> bool:
    """Some visible character (control characters and whitespace alone count as empty)."""
    return any(c.isprintable() and not c.isspace() for c in s)


def normalize_action(action: str) -> str:
    """Lower-case and collapse whitespace: the key used to compare actions. (str.split's
    whitespace is exactly what re's whitespace class matches in str patterns; split/join is
    several times faster on long text.)"""
    return " ".join(action.split()).lower()


def match_admissible(action: str, admissible: Sequence[str]) -> str | None:
    """The admissible action equal to `action` up to case and whitespace, else None."""
    key = normalize_action(action)
    for cand in admissible:
        if normalize_action(cand) == key:
            return cand
    return None


def parse_bare(text: str, admissible: Sequence[str] | None = None) -> ParsedAction:
    """A bare action such as "up" (no tags)."""
    action = text.strip()
    if not _has_content(action):
        return ParsedAction(action=None, status=ParseStatus.EMPTY, format_valid=False, raw_length=len(text))
    if admissible is not None:
        found = match_admissible(action, admissible)
        if found is None:
            return ParsedAction(action=action, status=ParseStatus.INADMISSIBLE, format_valid=True, raw_length=len(text))
        action = found
    return ParsedAction(action=action, status=ParseStatus.OK, format_valid=True, raw_length=len(text))


def parse_response(
    text: str,
    mode: ParseMode | str = ParseMode.STRICT,
    admissible: Sequence[str] | None = None,
    max_chars: int | None = None,
) -> ParsedAction:
    """Project a model response onto an action; see the module docstring for the taxonomy."""
    mode = ParseMode(mode)
    raw_length = len(text)
    cut = max_chars is not None and raw_length > max_chars
    if cut:
        text = text[:max_chars]

    def result(status: ParseStatus, action: str | None = None, think: str | None = None) -> ParsedAction:
        if cut and status not in (ParseStatus.OK, ParseStatus.INADMISSIBLE):
            status = ParseStatus.TRUNCATED
        fmt = status in (ParseStatus.OK, ParseStatus.INADMISSIBLE)
        return ParsedAction(action=action, status=status, format_valid=fmt, think=think, raw_length=raw_length)

    if not text.strip():
        return result(ParseStatus.EMPTY)
    if mode is ParseMode.STRICT and _CJK.search(text):
        return result(ParseStatus.LANGUAGE_VIOLATION, _first_block(text))

    low = text.lower()
    n_open, n_close = low.count("<action>"), low.count("</action>")
    if n_open == 0:
        return result(ParseStatus.NO_TAG)
    if n_open > 1 or n_close > 1:
        return result(ParseStatus.MULTIPLE_ACTIONS, _first_block(text))
    if n_close == 0:
        return result(ParseStatus.TRUNCATED)
    start, end = low.index("<action>"), low.index("</action>")
    if end < start:
        return result(ParseStatus.NO_TAG)
    action = text[start + len("<action>") : end].strip()
    think = None

    if mode is ParseMode.STRICT:
        n_think_open, n_think_close = low.count("<think>"), low.count("</think>")
        if n_think_open == 1 and n_think_close == 0:
            return result(ParseStatus.TRUNCATED, action)
        m = _STRICT.match(text) if (n_think_open == 1 and n_think_close == 1) else None
        if m is None:
            return result(ParseStatus.NO_TAG, action)
        think = m.group(1).strip()

    if not _has_content(action):
        return result(ParseStatus.EMPTY, None, think)
    if admissible is not None:
        found = match_admissible(action, admissible)
        if found is None:
            return result(ParseStatus.INADMISSIBLE, action, think)
        action = found
    return result(ParseStatus.OK, action, think)


def _first_block(text: str) -> str | None:
    low = text.lower()
    start = low.find("<action>")
    if start < 0:
        return None
    end = low.find("</action>", start)
    if end < 0:
        return None
    inner = text[start + len("<action>") : end]
    # nested blocks: keep the innermost text after the last opening tag
    inner = inner[inner.lower().rfind("<action>") + len("<action>") :] if "<action>" in inner.lower() else inner
    return inner.strip() or None


def looks_tagged(text: str) -> bool:
    """True if the text uses the tag format at all (for `action_format="auto"`)."""
    low = text.lower()
    return "<action" in low or "<think" in low or "</action" in low
