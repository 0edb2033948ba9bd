"""Property-based tests (Hypothesis): arbitrary unicode (lone surrogates included), sizes and
nesting never crash the parser, any env's step or the training-log readers (only ArlArenaError
subclasses may be raised) and never leave half-applied state. Example counts are kept small
(the engines are slow); `deadline=None` because the first example pays for loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arlarena_envs.contract import ParseMode, ParsedAction, ParseStatus
from arlarena_envs.errors import ArlArenaError
from arlarena_envs.parsing import parse_response
from arlarena_envs.registry import make

ANY_CHAR = st.characters(exclude_categories=())  # every code point, lone surrogates included
TOKENS = st.sampled_from(
    ["<think>", "</think>", "<action>", "</action>", "<ACTION>", "search[", "click[", "]", "[", "up", "left", "go to",
     "buy now", "\ud800", "\udfff", "\x00", "\u3042", " ", "\n", "look", "help"]
)
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=200),
    st.lists(st.one_of(TOKENS, st.text(ANY_CHAR, max_size=12)), max_size=30).map("".join),
    st.builds(lambda s, n: s * n, st.sampled_from(["<action>", "]", "[", "x ", "\ud800"]), st.integers(1, 5000)),
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _utf8_ok(text: str | None) -> bool:
    return text is None or bool(text.encode("utf-8") or True)


@FAST
@given(TEXT, st.sampled_from(list(ParseMode)), st.one_of(st.none(), st.integers(1, 300)),
       st.one_of(st.none(), st.lists(st.text(ANY_CHAR, max_size=10), max_size=5)))
def test_parser_total(text, mode, max_chars, admissible):
    p = parse_response(text, mode, admissible=admissible, max_chars=max_chars)
    assert isinstance(p.status, ParseStatus) and p.raw_length == len(text)
    assert p.format_valid == (p.status in (ParseStatus.OK, ParseStatus.INADMISSIBLE))
    if p.status is ParseStatus.OK:
        assert p.action is not None and (admissible is None or p.action in admissible)


# ------------------------------------------------------------------ envs

_ENVS: dict[str, object] = {}


def _env(env_id: str, **kwargs):
    if env_id not in _ENVS:
        _ENVS[env_id] = make(env_id, **kwargs).unwrapped
    return _ENVS[env_id]


def _snapshot(env):
    return (env.observation, env.history, env._steps, env._ready, env._state_hash())


def _check_steps(env, seed: int, actions: list):
    """Step through `actions`: every step succeeds or raises an ArlArenaError leaving the env as
    it was; observations are valid UTF-8; history and counters follow the steps; replaying the
    same actions on a reset env gives the same state hashes (no hidden state)."""
    env.reset(seed=seed)
    hashes = [env.observation.state_hash]
    for a in actions:
        before = _snapshot(env)
        try:
            obs, reward, term, trunc, info = env.step(a)
        except ArlArenaError:
            assert _snapshot(env) == before
            break
        assert obs.encode("utf-8") and info["task"].encode("utf-8")
        assert all(x.encode("utf-8") for x in (info["admissible_actions"] or []))
        assert len(env.history) == info["step"] == before[2] + 1 and env.observation.state_hash == info["state_hash"]
        if info["action"] is None:  # nothing executed: the game state did not move
            assert info["state_hash"] == before[4]
        hashes.append(info["state_hash"])
        if term or trunc:
            break
    env.reset(seed=seed)
    replay = [env.observation.state_hash]
    for a in actions[: len(hashes) - 1]:
        replay.append(env.step(a)[4]["state_hash"])
    assert replay == hashes


def _actions(env_tokens: list[str], max_size: int = 8):
    bare = st.sampled_from(env_tokens)
    tagged = st.builds(lambda t, a: f"<think>{t}</think><action>{a}</action>", st.text(ANY_CHAR, max_size=20), bare)
    as_bytes = TEXT.map(lambda s: s.encode("utf-8", "surrogatepass"))
    parsed = st.builds(lambda a, s: ParsedAction(action=a, status=s, format_valid=True),
                       st.one_of(st.none(), bare, st.text(ANY_CHAR, max_size=20)), st.sampled_from(list(ParseStatus)))
    return st.lists(st.one_of(bare, tagged, TEXT, as_bytes, parsed), min_size=1, max_size=max_size)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), _actions(["up", "down", "left", "right", "UP ", "jump"]))
def test_sokoban_steps(seed, actions):
    _check_steps(_env("arlarena/Sokoban-v0"), seed, actions)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), _actions(["search[red shoes]", "click[back to search]", "click[next >]", "click[< prev]",
                                          "click[buy now]", "search[\ud800 x]", "click[description]", "search[]"]))
def test_webshop_steps(seed, actions):
    env = _env("arlarena/WebShop-v0")
    env.reset(seed=seed)
    oracle = [env.oracle_action() or "click[buy now]"]
    _check_steps(env, seed, oracle + actions)


@SLOW
@given(st.integers(0, 3), _actions(["look", "inventory", "go to desk 1", "help", "take pen 1 from desk 1", "examine \ud800"], 5))
def test_alfworld_steps(seed, actions):
    pytest.importorskip("alfworld")
    _check_steps(_env("arlarena/ALFWorld-v0"), seed, actions)


@SLOW
@given(st.integers(0, 1), _actions(["look", "inventory", "go north", "take coin", "open chest", "eat \ud800"], 5))
def test_textworld_steps(seed, actions):
    pytest.importorskip("textworld")
    _check_steps(_env("arlarena/TextWorld-v0"), seed, actions)


# ------------------------------------------------------------------ log readers

JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
              st.text(ANY_CHAR, max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(ANY_CHAR, max_size=10), children, max_size=4)),
    max_leaves=20,
)
METRIC_KEYS = st.sampled_from(["step", "training/global_step", "_step", "success", "val/success_rate", "actor/grad_norm",
                               "phase", "entropy", "eval_success", "critic/score/mean", "x"])
ROW = st.dictionaries(st.one_of(METRIC_KEYS, st.text(ANY_CHAR, max_size=8)), JSON_VALUE, max_size=8)


def _json_line(v) -> str:
    return json.dumps(v, ensure_ascii=True)  # \\udXXX escapes: what json.loads turns into lone surrogates


LINES = st.lists(st.one_of(ROW.map(_json_line), st.text(ANY_CHAR, max_size=60),
                           st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
                           st.integers(1, 3000).map(lambda n: '{"step": 1, "x": ' + "[" * n + "]" * n + "}")), max_size=12)


def _read_and_report(path: Path, tmp: Path):
    from arlarena_envs.stability import analyze_runs, load_run, write_report

    try:
        load_run(path)
        report = analyze_runs([path])
        write_report(report, tmp / "report", plots=False)
    except ArlArenaError:
        pass


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(LINES, st.sampled_from(["metrics.jsonl", "metrics.csv", "train.log"]))
def test_log_readers_total(tmp_path_factory, lines, name):
    tmp = tmp_path_factory.mktemp("log")
    path = tmp / name
    if name.endswith(".csv"):
        body = "\n".join(",".join(l.replace("\n", " ").split(" ")[:5]) for l in ["step,success,actor/grad_norm"] + lines)
    elif name.endswith(".log"):
        body = "\n".join(f"step:{i} - " + l.replace("\n", " ") for i, l in enumerate(lines))
    else:
        body = "\n".join(l.replace("\n", " ") for l in lines)
    path.write_bytes(body.encode("utf-8", "surrogatepass"))
    _read_and_report(path, tmp)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_log_readers_on_arbitrary_bytes(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("bin")
    for name in ("metrics.jsonl", "metrics.csv", "train.log"):
        (tmp / name).write_bytes(data)
        _read_and_report(tmp / name, tmp)
