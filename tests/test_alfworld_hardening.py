"""ALFWorld / TextWorld hardening: the oracle never proposes `help`, partial official data keeps
its task indices and names what is unplayable, broken games are named (at scan or at load),
alfworld's import leaves HOME / ALFWORLD_DATA / sys.argv alone, read-only HOME works, caches
are bounded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from arlarena_envs.alfworld.official import official_slots, pddl_complete, scan_split
from arlarena_envs.cache_dir import cache_root, evict_oldest
from arlarena_envs.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / ".." / "shared" / "data" / "alfworld-official-sample"


def _trial(root: Path, task: str, trial: str, *, game: bool = True, problem: str = "(define (problem p))") -> Path:
    d = root / "json_2.1.1" / "valid_seen" / task / trial
    d.mkdir(parents=True)
    (d / "traj_data.json").write_text(json.dumps({"task_type": "pick_and_place_simple", "pddl_params": {}}))
    if game:
        (d / "game.tw-pddl").write_text(json.dumps(
            {"pddl_domain": "(define (domain d))", "grammar": "{}", "pddl_problem": problem, "solvable": True}))
    return d


def test_pddl_completeness_check():
    assert pddl_complete("(define (problem p) ; a comment with ) in it\n (:init (at a b)))")
    assert not pddl_complete("(define (problem p) (:init (at a b)")  # cut short
    assert not pddl_complete(")(") and not pddl_complete("") and not pddl_complete(None)


def test_partial_official_data_keeps_indices_and_names_the_unplayable(tmp_path: Path):
    from arlarena_envs.alfworld.env import ALFWorldEnv

    _trial(tmp_path, "pick_and_place_simple-A-None-Desk-1", "trial_1")
    _trial(tmp_path, "pick_and_place_simple-B-None-Desk-1", "trial_1", game=False)  # incomplete download
    _trial(tmp_path, "pick_and_place_simple-C-None-Desk-1", "trial_1", problem="(define (problem p) (:init (at a")
    _trial(tmp_path, "pick_and_place_simple-D-None-Desk-1", "trial_1")
    scan = scan_split(tmp_path / "json_2.1.1" / "valid_seen")
    assert any("truncated" in why for _, why in scan.unloadable)  # caught at scan, file named
    assert [p.parts[-3][-10:] for p, _ in official_slots(scan)] == ["A-None-Desk-1"[-10:], "B-None-Desk-1"[-10:],
                                                                    "C-None-Desk-1"[-10:], "D-None-Desk-1"[-10:]]
    pytest.importorskip("alfworld")
    env = ALFWorldEnv(cache_dir=tmp_path / "cache", data_dir=tmp_path, split="valid_seen", official_allow_partial=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = env.official_problems("valid_seen")
    assert sorted(problems) == [1, 2] and "missing" in problems[1] and "truncated" in problems[2]
    assert any("2 of 4 games cannot be played" in str(w.message) for w in caught)
    assert len(env.official_games("valid_seen")) == 2
    with pytest.raises(DataError, match=r"task 2 cannot be played: .*C-None-Desk-1.*truncated"):
        env.reset(options={"task_index": 2})
    with pytest.raises(DataError, match=r"task 9 does not exist"):
        env.reset(options={"task_index": 9})


def test_without_allow_partial_a_truncated_game_fails_the_count_naming_it(tmp_path: Path):
    from arlarena_envs.alfworld.official import collect_official_games

    _trial(tmp_path, "pick_and_place_simple-C-None-Desk-1", "trial_1", problem="(define (problem p) (:init")
    with pytest.raises(DataError, match=r"game.tw-pddl \(pddl_problem is truncated"):
        collect_official_games(tmp_path, "valid_seen", expected=None)


def test_cache_root_falls_back_and_explicit_unwritable_is_an_error(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("ARLARENA_CACHE", raising=False)
    monkeypatch.setenv("HOME", "/proc")  # not writable, even for root
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert cache_root("alfworld").is_relative_to(tmp_path)
    monkeypatch.setenv("ARLARENA_CACHE", "/proc/arlarena")
    with pytest.raises(DataError, match="ARLARENA_CACHE"):
        cache_root("alfworld")


def test_evict_oldest_keeps_the_most_recent(tmp_path: Path):
    for i in range(5):
        (tmp_path / f"g{i}").mkdir()
        os.utime(tmp_path / f"g{i}", (1000 + i, 1000 + i))
    (tmp_path / ".tmp-in-progress").mkdir()
    assert evict_oldest(tmp_path, keep=2, protect=tmp_path / "g0") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-in-progress", "g0", "g3", "g4"]


def _run(code: str, env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("ALFWORLD_DATA", "ARLARENA_CACHE")}
    full.update(env)
    full["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=full)


def test_read_only_home_alfworld_keeps_argv_and_environment(tmp_path: Path):
    pytest.importorskip("alfworld")
    code = (
        "import os, sys\n"
        "sys.argv = ['prog', '--x']\n"
        "from arlarena_envs.registry import make\n"
        "e = make('arlarena/ALFWorld-v0').unwrapped\n"
        "obs, info = e.reset(seed=0)\n"
        "e.step(e.oracle_action())\n"
        "print('ARGV', sys.argv, 'DATA', os.environ.get('ALFWORLD_DATA'), 'CACHE', e.cache_dir)\n"
        "from arlarena_envs.errors import DataError\n"
        "try:\n    e.reset(options={'split': 'valid_seen', 'task_index': 0})\nexcept DataError as x:\n    print('ERR', x)\n"
    )
    r = _run(code, {"HOME": "/proc", "TMPDIR": str(tmp_path)}, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ARGV ['prog', '--x'] DATA None" in r.stdout and f"CACHE {tmp_path}" in r.stdout
    assert "ERR the official ALFWorld splits need the official data and none is configured" in r.stdout


def test_alfworld_default_data_folder_is_named_as_such(tmp_path: Path):
    pytest.importorskip("alfworld")
    code = (
        "import alfworld.info  # the user imported alfworld first: it sets ALFWORLD_DATA=~/.cache/alfworld\n"
        "from arlarena_envs.alfworld.official import resolve_data_root\n"
        "from arlarena_envs.errors import DataError\n"
        "try:\n    resolve_data_root()\nexcept DataError as x:\n    print('ERR', x)\n"
    )
    r = _run(code, {"HOME": str(tmp_path)}, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "alfworld's own default" in r.stdout and "never configured" in r.stdout


def test_read_only_home_textworld(tmp_path: Path):
    pytest.importorskip("textworld")
    code = (
        "from arlarena_envs.registry import make\n"
        "e = make('arlarena/TextWorld-v0').unwrapped\n"
        "obs, info = e.reset(seed=3)\n"
        "print('OK', e.cache_dir)\n"
    )
    r = _run(code, {"HOME": "/proc", "TMPDIR": str(tmp_path)}, tmp_path)
    assert r.returncode == 0 and "OK" in r.stdout, (r.stdout + r.stderr)[-3000:]
    assert "install" not in r.stderr


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    pytest.importorskip("alfworld")
    from arlarena_envs.alfworld.env import ALFWorldEnv

    cache = tmp_path_factory.mktemp("alfcache")
    env = ALFWorldEnv(cache_dir=cache)
    yield env
    env.close()


def test_broken_game_at_load_is_a_data_error_naming_the_file(generated, tmp_path: Path):
    from arlarena_envs.alfworld.env import ALFWorldEnv

    generated.reset(seed=0)
    trial = tmp_path / "json_2.1.1" / "valid_seen" / "pick_and_place_simple-X-None-Desk-1" / "trial_1"
    shutil.copytree(Path(generated.game_path).parent, trial)
    game = json.loads((trial / "game.tw-pddl").read_text())
    game["pddl_problem"] = "(define (problem broken) (:domain alfred) (:objects) (:init (nonsense)) (:goal (and (foo bar))))"
    game["solvable"] = True
    (trial / "game.tw-pddl").write_text(json.dumps(game))
    env = ALFWorldEnv(cache_dir=tmp_path / "c", data_dir=tmp_path, split="valid_seen", official_allow_partial=True)
    try:
        with pytest.raises(DataError, match=r"cannot (start|load) .*trial_1/game.tw-pddl"):
            env.reset(seed=0)  # fast-downward raises SystemExit here: it must not end the process
    finally:
        env.close()


def test_oracle_never_proposes_help_even_when_the_expert_falls_back(generated, monkeypatch):
    """The handcoded expert answers random.choice(admissible_commands) when it would repeat
    itself; force that branch on every step: 'help' must never come out."""
    generated.reset(seed=0, options={"task_index": 3})
    expert = generated._session._expert_wrapper()._handcoded_expert
    monkeypatch.setattr(expert.policy, "act", lambda game_state, last_action: last_action)
    proposed = []
    for _ in range(40):
        a = generated.oracle_action()
        if a is None:
            break
        proposed.append(a)
        r = generated.step_result(a)
        assert r.info.parse_status.value == "ok"
        if r.done:
            break
    assert len(proposed) >= 20 and "help" not in proposed


def test_generated_game_cache_is_bounded(tmp_path: Path):
    pytest.importorskip("alfworld")
    from arlarena_envs.alfworld.generator import GENERATOR_VERSION, generate_game, write_game

    for task_id in range(4):
        write_game(generate_game(task_id, "seen"), tmp_path, max_cached=2)
    pool = tmp_path / f"gen-v{GENERATOR_VERSION}" / "seen"
    assert len([p for p in pool.iterdir() if p.is_dir()]) == 2


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared official ALFWorld sample absent")
@pytest.mark.parametrize("split", ["valid_seen", "valid_unseen", "official_train"])
def test_official_sample_seed_5_oracle_wins(split, tmp_path: Path):
    pytest.importorskip("alfworld")
    from arlarena_envs.alfworld.env import ALFWorldEnv

    env = ALFWorldEnv(cache_dir=tmp_path, data_dir=SAMPLE, split=split, official_allow_partial=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env.reset(seed=5)
        actions, r = [], None
        while (a := env.oracle_action()) is not None:
            actions.append(a)
            r = env.step_result(a)
            if r.done:
                break
        assert "help" not in actions and r is not None and r.info.won
    finally:
        env.close()
