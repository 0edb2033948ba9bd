"""arlarena/ALFWorld-v0 on the real engine: every task type is solvable by the walkthrough and by
the handcoded expert (the oracle); contract details; identical episodes across processes;
official data; a clear error without the extra.

The engine loads a game in ~1 s and steps at ~10/s here, so the games are few and shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("alfworld")
pytest.importorskip("textworld")

from arlarena_envs.alfworld import ALFWorldEnv  # noqa: E402
from arlarena_envs.alfworld.generator import SUCCESS_NAMES, TASK_TYPES  # noqa: E402
from arlarena_envs.errors import DataError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / ".." / "shared" / "data" / "alfworld-official-sample"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("alfworld-cache")


@pytest.fixture(scope="module")
def env(cache: Path):
    e = ALFWorldEnv(cache_dir=cache)
    yield e
    e.close()


def _play(env: ALFWorldEnv, actions=None, limit: int = 50):
    """Play the given actions, or the oracle's until the episode ends; returns (actions, last result)."""
    played, r = [], None
    for k in range(limit):
        a = actions[k] if actions is not None else env.oracle_action()
        if a is None or (actions is not None and k >= len(actions)):
            break
        r = env.step_result(a)
        played.append(a)
        if r.done or (actions is not None and k + 1 >= len(actions)):
            break
    return played, r


@pytest.mark.parametrize("task_index", range(6), ids=list(TASK_TYPES))
def test_every_task_type_is_solved_by_walkthrough_and_expert(env: ALFWorldEnv, task_index: int):
    obs, info = env.reset_result(seed=0, options={"task_index": task_index})
    assert info.extra["task_type"] == TASK_TYPES[task_index]
    assert obs.text.startswith("-= Welcome to TextWorld, ALFRED! =-") and obs.task and obs.task in obs.text
    assert "help" not in obs.admissible_actions and obs.admissible_actions == sorted(obs.admissible_actions)
    # the walkthrough stored in the game wins, with reward 10 x won on the last step only
    walk = env.walkthrough
    _, r = _play(env, walk)
    assert r is not None and r.terminated and r.info.won and r.reward == 10.0, (walk, r.observation.text)
    name = SUCCESS_NAMES[TASK_TYPES[task_index]]
    assert r.info.extra["task_name"] == name and r.info.extra[f"{name}_success"] == 1.0
    # the handcoded expert, exposed as oracle_action(), wins from the start too
    env.reset_result(seed=0, options={"task_index": task_index})
    played, r = _play(env)
    assert r is not None and r.info.won and r.terminated, played
    assert env.oracle_action() is None  # nothing left to do


def test_state_hash_is_the_engine_state_and_groups_agree(env: ALFWorldEnv, cache: Path):
    first, _ = env.reset_result(seed=3)
    other = ALFWorldEnv(cache_dir=cache)
    try:
        again, _ = other.reset_result(seed=3)
        assert again.state_hash == first.state_hash and again.text == first.text  # a GRPO group
    finally:
        other.close()
    walk = env.walkthrough
    r = env.step_result(walk[0])  # "go to ...": the agent moved
    assert r.observation.state_hash != first.state_hash
    r2 = env.step_result("<think>x</think><action>not a command</action>")  # invalid: not executed
    assert r2.observation.state_hash == r.observation.state_hash
    assert r2.info.parse_status.value == "inadmissible" and r2.reward == pytest.approx(-0.1)


def test_expert_leaves_global_random_alone(env: ALFWorldEnv):
    import random

    random.seed(1234)
    expected = random.Random(1234).random()
    env.reset_result(seed=5)
    _play(env, limit=5)
    assert random.random() == expected


_SCRIPT = r"""
import json, sys
from arlarena_envs.alfworld import ALFWorldEnv
env = ALFWorldEnv(cache_dir=sys.argv[1])
obs, info = env.reset_result(seed=int(sys.argv[2]))
events = [[obs.text, obs.state_hash, obs.admissible_actions]]
for _ in range(12):
    a = env.oracle_action()
    if a is None:
        break
    r = env.step_result(a)
    events.append([a, r.observation.text, r.observation.state_hash, r.reward, r.info.won])
    if r.done:
        break
print(json.dumps(events))
"""


def test_identical_episodes_across_processes(tmp_path: Path):
    # seed 5: pick-two, where the expert uses random tie breaks; two PYTHONHASHSEEDs
    outs = []
    for hashseed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(tmp_path / f"cache{hashseed}"), "5"],
            capture_output=True, text=True, timeout=300, cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": hashseed},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1]
    assert len(outs[0]) > 3


def test_official_split_without_full_data_fails_clearly(tmp_path: Path, cache: Path):
    (tmp_path / "json_2.1.1" / "valid_seen").mkdir(parents=True)
    e = ALFWorldEnv(cache_dir=cache, data_dir=tmp_path, split="valid_seen")
    with pytest.raises(DataError, match=r"found 0 playable games .* expected 140"):
        e.reset(seed=0)


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared official ALFWorld sample absent")
def test_official_sample_game_plays(cache: Path):
    e = ALFWorldEnv(cache_dir=cache, data_dir=SAMPLE, split="valid_seen", official_allow_partial=True)
    try:
        assert len(e.official_games("valid_seen")) == 12
        obs, info = e.reset_result(seed=0, options={"task_index": 0})
        assert info.extra["source"] == "official" and info.extra["game_id"].startswith("official/valid_seen/")
        _, r = _play(e, e.walkthrough)
        assert r is not None and r.info.won and r.reward == 10.0
    finally:
        e.close()


def test_missing_extra_names_it():
    code = (
        "import sys; sys.modules['alfworld'] = None; sys.modules['textworld'] = None\n"
        "import arlarena_envs.alfworld  # the package imports without the engine\n"
        "from arlarena_envs.registry import make\n"
        "from arlarena_envs.errors import MissingDependencyError\n"
        "try:\n    make('arlarena/ALFWorld-v0')\nexcept MissingDependencyError as e:\n    print('MDE', e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MDE" in proc.stdout and "alfworld" in proc.stdout and "pip install" in proc.stdout


def test_textgen_cache_changes_nothing(cache: Path):
    """The parse cache (fast_textgen, on by default) gives the stock engine's transcripts."""
    from arlarena_envs.alfworld.engine import install_textgen_cache

    def transcript(fast: bool):
        install_textgen_cache(fast)
        e = ALFWorldEnv(cache_dir=cache, fast_textgen=fast)
        try:
            obs, _ = e.reset_result(seed=0, options={"task_index": 1})
            out = [(obs.text, obs.admissible_actions, obs.state_hash)]
            for a in e.walkthrough:
                r = e.step_result(a)
                out.append((r.observation.text, r.observation.admissible_actions, r.observation.state_hash, r.reward))
            return out
        finally:
            e.close()

    try:
        assert transcript(True) == transcript(False)
    finally:
        install_textgen_cache(True)
