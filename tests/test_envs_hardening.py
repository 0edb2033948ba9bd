"""Envs and CLI hardening: the text rule (lone surrogates), atomic steps (no half-applied state),
bounded WebShop queries and byte-bounded caches, immutable specs, one-line CLI errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from arlarena_envs.cli import main as cli_main
from arlarena_envs.contract import ParsedAction, ParseStatus
from arlarena_envs.errors import ArlArenaError, InvalidArgumentError, ResetNeededError
from arlarena_envs.hashing import sha256_hex, state_hash
from arlarena_envs.lru import ByteLRU
from arlarena_envs.play import play
from arlarena_envs.registry import get_spec, load_specs, make
from arlarena_envs.unicode import clean_json, clean_text
from arlarena_envs.webshop.env import MAX_QUERY_CHARS

REPO = Path(__file__).resolve().parents[1]
SOKO, SHOP = "arlarena/Sokoban-v0", "arlarena/WebShop-v0"


def _state(env):
    """Everything a step may change, as comparable values."""
    return (env.observation, env.history, env._steps, env._terminated, env._ready, env._state_hash())


# ------------------------------------------------------------------ the text rule


def test_clean_text_replaces_lone_surrogates_only():
    assert clean_text("plain") == "plain" and clean_text("naïve ✓") == "naïve ✓"
    assert clean_text("a\ud800b") == "a\ufffdb"
    assert clean_text("\ud83d\ude00") == "😀"  # a pair written as two code units is the character
    assert clean_text("\ude00\ud83d") == "\ufffd\ufffd"
    assert clean_json({"k\udfff": ["x\ud800", 1, {"y": "\udc00"}]}) == {"k\ufffd": ["x\ufffd", 1, {"y": "\ufffd"}]}


def test_hashing_is_total_over_python_strings():
    assert len(state_hash({"q": "\ud800"})) == 32 and sha256_hex("\udfff") != sha256_hex("\ufffd")


@pytest.mark.parametrize("action", ["search[\ud800 x]", "<think>\ud800</think><action>search[a\udc00]</action>", b"search[\xff\xfe]"])
def test_lone_surrogates_step_cleanly(action):
    env = make(SHOP).unwrapped
    env.reset(seed=0)
    obs, reward, term, trunc, info = env.step(action)
    assert info["parse_status"] in ("ok", "no_tag") and obs.encode("utf-8")
    assert (info["action"] or "").encode("utf-8") is not None
    assert all(a.encode("utf-8") for _, a in env.history)


def test_parsed_action_fields_follow_the_text_rule_and_the_size_bound():
    env = make(SOKO).unwrapped
    env.reset(seed=0)
    r = env.step_result(ParsedAction(action="up", status=ParseStatus.OK, format_valid=True, think="\ud800"))
    assert r.info.parse_status is ParseStatus.OK
    big = ParsedAction(action="x" * (env.protocol.max_action_chars + 1), status=ParseStatus.OK, format_valid=True)
    assert env.step_result(big).info.parse_status is ParseStatus.TRUNCATED


# ------------------------------------------------------------------ atomic steps


@pytest.mark.parametrize("env_id", [SOKO, SHOP])
def test_a_failing_step_is_rolled_back(env_id, monkeypatch):
    env = make(env_id).unwrapped
    env.reset(seed=1)
    action = env.oracle_action()
    before = _state(env)
    game_before = env._snapshot_state()

    def boom():
        raise RuntimeError("late failure, after the game moved")

    monkeypatch.setattr(env, "_extra_info", boom)
    with pytest.raises(RuntimeError, match="late failure"):
        env.step(action)
    assert _state(env) == before and env._snapshot_state() == game_before
    monkeypatch.undo()
    _, _, _, _, info = env.step(action)  # the env keeps working, from the same state
    assert info["step"] == 1 and info["action"] is not None


def test_an_env_without_snapshot_closes_the_episode_on_failure(monkeypatch):
    env = make(SOKO).unwrapped
    env.reset(seed=1)
    monkeypatch.setattr(env, "_snapshot_state", lambda: None)
    monkeypatch.setattr(env, "_observe", lambda: (_ for _ in ()).throw(RuntimeError("engine died")))
    hist = env.history
    with pytest.raises(RuntimeError):
        env.step("up")
    assert env.history == hist and env._steps == 0
    with pytest.raises(ResetNeededError):
        env.step("up")


# ------------------------------------------------------------------ WebShop queries and caches


def test_long_queries_are_inadmissible_and_not_executed():
    env = make(SHOP).unwrapped
    env.reset(seed=0)
    ok = "search[" + "a" * MAX_QUERY_CHARS + "]"
    too_long = "search[" + "a" * (MAX_QUERY_CHARS + 1) + "]"
    big = "search[" + "word " * 100_000 + "]"  # 500 KB: under max_action_chars, over the query bound
    huge = "search[" + "word " * 200_000 + "]"  # 1 MB: over max_action_chars
    for action, status in ((too_long, "inadmissible"), (big, "inadmissible"), (huge, "truncated")):
        h = env.observation.state_hash
        _, _, _, _, info = env.step(action)
        assert info["parse_status"] == status and info["action"] is None
        assert env.page == "search" and info["state_hash"] == h
    assert env.step(ok)[4]["parse_status"] == "ok" and env.page == "results"
    assert len(env._keywords[0]) == MAX_QUERY_CHARS


def test_byte_lru_bounds_bytes_and_count():
    lru = ByteLRU(max_items=100, max_bytes=1000, size_of=lambda k, v: len(k) + len(v))
    for i in range(50):
        lru.put(f"k{i}", "v" * 90)
        assert lru.total_bytes <= 1000 and len(lru) <= 100
    assert lru.get("k49") is not None and lru.get("k0") is None and lru.evictions > 0
    lru.put("huge", "x" * 5000)  # larger than the budget: not cached, nothing else evicted for it
    assert lru.get("huge") is None and lru.total_bytes <= 1000
    lru.get("k45")
    lru.put("new", "v" * 90)
    assert lru.get("k45") is not None  # recently used survives


def test_search_caches_stay_within_their_byte_budgets(monkeypatch):
    from arlarena_envs.webshop import search

    env = make(SHOP).unwrapped
    index = env.catalogue.index
    monkeypatch.setattr(search, "STEM_CACHE_BYTES", 200_000)
    for i in range(60):
        index._tokens(" ".join(f"w{i}x{j}zz" for j in range(300)))
        assert index._stem_bytes <= 200_000
    for i in range(30):
        index.search(f"query {i} " + "lorem " * 80)
    assert index._results.total_bytes <= search.RESULT_CACHE_BYTES


# ------------------------------------------------------------------ specs


def test_specs_are_immutable():
    spec = get_spec(SOKO)
    with pytest.raises(ValidationError):
        spec.protocol.max_steps = 3
    with pytest.raises(ValidationError):
        spec.default_split = "eval"
    spec.kwargs["colour"] = "red"  # a copy: nothing leaks into the registry
    spec.splits.clear()
    load_specs()[SOKO].golden.clear()
    fresh = get_spec(SOKO)
    assert "colour" not in fresh.kwargs and fresh.splits and fresh.golden
    assert make(SOKO).unwrapped.protocol.max_steps == fresh.protocol.max_steps


def test_unknown_env_kwargs_name_the_valid_ones():
    with pytest.raises(InvalidArgumentError) as ei:
        make(SHOP, max_step=5)
    msg = str(ei.value)
    assert "max_step" in msg and "max_steps" in msg and "catalogue_seed" in msg and "split" in msg
    with pytest.raises(InvalidArgumentError, match="max_steps"):
        make(SOKO, max_steps=0)
    with pytest.raises(InvalidArgumentError):
        make(SOKO).unwrapped.reset(seed=-1)


# ------------------------------------------------------------------ CLI


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["play", SOKO, "--seed", "-1"], "non-negative"),
        (["play", SOKO, "--env-kwargs", '{"max_step":5}'], "max_steps"),
        (["play", SOKO, "--env-kwargs", "[1"], "JSON object"),
        (["play", SOKO, "--env-kwargs", "[1]"], "JSON object"),
        (["play", SOKO, "--env-kwargs", '{"max_steps":-5}'], "max_steps"),
        (["play", SOKO, "--split", "nope"], "no split"),
        (["play", "Nope-v0"], "no env"),
        (["check", SOKO, "--env-kwargs", "{"], "JSON object"),
        (["stability", "/nonexistent/run"], "no such run"),
        (["stability", "--config", "/nonexistent.yaml", "/nonexistent/run"], "cannot read"),
        (["leaderboard", "render", "--results", "/nonexistent/results"], "no results folder"),
    ],
)
def test_user_errors_are_one_line_and_non_zero(argv, needle, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    try:
        rc = cli_main(argv)
    except SystemExit as e:  # argparse usage errors exit 2 after printing usage + one error line
        rc = e.code
    err = capsys.readouterr().err
    assert rc not in (0, None) and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"arlarena {argv[0]}") and needle in last


def test_user_error_from_a_real_process_has_no_traceback():
    r = subprocess.run([sys.executable, "-m", "arlarena_envs.cli", "play", SOKO, "--env-kwargs", '{"max_step":5}'],
                       capture_output=True, text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_play_reset_with_a_bad_seed_is_refused_politely():
    out = io.StringIO()
    play(SOKO, seed=0, stdin=io.StringIO(":reset abc\n:reset -3\n:quit\n"), out=out)
    assert out.getvalue().count("usage: :reset [seed]") == 2


def test_every_error_class_is_an_arlarena_error():
    import arlarena_envs.errors as errors

    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == errors.__name__:
            assert issubclass(obj, ArlArenaError), name
