"""Every parse status, with adversarial strings."""

import pytest

from arlarena_envs.contract import ParseMode, ParseStatus
from arlarena_envs.parsing import normalize_action, parse_bare, parse_response

ADM = ["up", "down", "left", "right"]
OK = ParseStatus.OK


@pytest.mark.parametrize(
    "text, mode, status, action",
    [
        ("<think>go</think><action>up</action>", "strict", OK, "up"),
        ("  <think>\nmulti\nline</think>\n <action> Left </action>\n", "strict", OK, "left"),
        ("<THINK>x</THINK><ACTION>down</ACTION>", "strict", OK, "down"),
        ("", "strict", ParseStatus.EMPTY, None),
        ("   \n\t ", "lenient", ParseStatus.EMPTY, None),
        ("<think>x</think><action>   </action>", "strict", ParseStatus.EMPTY, None),
        ("I would go up", "strict", ParseStatus.NO_TAG, None),
        ("</action>up<action>", "strict", ParseStatus.NO_TAG, None),
        ("<action>up</action>", "strict", ParseStatus.NO_TAG, "up"),  # strict needs <think>
        ("<action>up</action>", "lenient", OK, "up"),
        ("sure! <action>up</action> done", "lenient", OK, "up"),
        ("<think>a</think> chatter <action>up</action>", "strict", ParseStatus.NO_TAG, "up"),
        ("<think>a</think><think>b</think><action>up</action>", "strict", ParseStatus.NO_TAG, "up"),
        ("<think>a</think><action>up</action><action>down</action>", "strict", ParseStatus.MULTIPLE_ACTIONS, "up"),
        ("<think>a</think><action><action>up</action></action>", "strict", ParseStatus.MULTIPLE_ACTIONS, "up"),
        ("<think>a</think><action>up", "strict", ParseStatus.TRUNCATED, None),
        ("<think>I am still thinking about", "strict", ParseStatus.NO_TAG, None),
        ("<think>still thinking <action>up</action>", "strict", ParseStatus.TRUNCATED, "up"),
        ("<think>\u5411\u4e0a</think><action>up</action>", "strict", ParseStatus.LANGUAGE_VIOLATION, "up"),
        ("<think>\u5411\u4e0a</think><action>up</action>", "lenient", OK, "up"),
        ("<think>a</think><action>jump</action>", "strict", ParseStatus.INADMISSIBLE, "jump"),
    ],
)
def test_statuses(text, mode, status, action):
    p = parse_response(text, ParseMode(mode), admissible=ADM)
    assert p.status is status
    assert p.action == action
    assert p.format_valid == (status in (OK, ParseStatus.INADMISSIBLE))
    assert p.raw_length == len(text)


def test_one_megabyte_and_binary_never_raise():
    big = "<think>" + "x" * 1_000_000 + "</think><action>up</action>"
    assert parse_response(big, admissible=ADM).status is OK
    assert parse_response("a" * 1_000_000).status is ParseStatus.NO_TAG
    junk = bytes(range(256)).decode("latin-1") * 100
    assert parse_response(junk).status is ParseStatus.NO_TAG
    assert parse_response("\x00<action>\x00</action>", "lenient").status is ParseStatus.EMPTY


def test_cut_at_max_chars_is_truncated():
    text = "<think>" + "y" * 100 + "</think><action>up</action>"
    assert parse_response(text, max_chars=50).status is ParseStatus.TRUNCATED
    assert parse_response(text, max_chars=10_000, admissible=ADM).status is OK


def test_unicode_action_and_emoji():
    p = parse_response("<think>\U0001f600</think><action>caf\u00e9</action>", admissible=["Caf\u00e9"])
    assert p.status is OK and p.action == "Caf\u00e9"


def test_bare_actions():
    assert parse_bare("  UP ", ADM).action == "up"
    assert parse_bare("", ADM).status is ParseStatus.EMPTY
    assert parse_bare("fly", ADM).status is ParseStatus.INADMISSIBLE
    assert parse_bare("anything", None).status is OK
    assert normalize_action("  Go   To  Desk 1 ") == "go to desk 1"
