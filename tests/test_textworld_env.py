"""arlarena/TextWorld-v0: generated offline from a seed, cached, solvable by the oracle (TextWorld's
winning policy), identical across processes, pinned game checksums, sparse/dense rewards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("textworld")

from arlarena_envs.errors import ConfigError  # noqa: E402
from arlarena_envs.registry import get_spec  # noqa: E402
from arlarena_envs.textworld import TextWorldEnv  # noqa: E402
from arlarena_envs.textworld.generator import game_digest, game_for, make_game  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("textworld-cache")


@pytest.fixture(scope="module")
def env(cache: Path):
    e = TextWorldEnv(cache_dir=cache)
    yield e
    e.close()


def _oracle_episode(env: TextWorldEnv, seed: int):
    obs, info = env.reset_result(seed=seed)
    results = []
    while True:
        a = env.oracle_action()
        assert a is not None and a in env.observation.admissible_actions
        r = env.step_result(a)
        results.append(r)
        if r.done:
            return obs, results


@pytest.mark.parametrize("seed", [0, 1])
def test_oracle_wins_with_sparse_reward(env: TextWorldEnv, seed: int):
    obs, results = _oracle_episode(env, seed)
    assert obs.task and obs.task in obs.text and "$$" not in obs.text  # banner removed
    assert obs.admissible_actions == sorted(obs.admissible_actions)
    last = results[-1]
    assert last.terminated and not last.truncated and last.info.won and last.info.score == 1.0
    assert [r.reward for r in results] == [0.0] * (len(results) - 1) + [10.0]
    assert env.oracle_action() is None


def test_dense_reward_follows_progress(cache: Path):
    e = TextWorldEnv(cache_dir=cache, reward_mode="dense")
    try:
        obs, info = e.reset_result(seed=0)
        plan_first = e.oracle_action()
        detour = next(a for a in obs.admissible_actions if a.startswith("go ") and a != plan_first) if any(
            a.startswith("go ") and a != plan_first for a in obs.admissible_actions) else None
        rewards = []
        if detour:
            rewards.append(e.step_result(detour).reward)  # walking away lengthens the plan
            assert rewards[-1] == pytest.approx(-1.0)
        while not e.observation or e.oracle_action() is not None:
            r = e.step_result(e.oracle_action())
            rewards.append(r.reward)
            if r.done:
                break
        assert rewards[-1] == 10.0 and all(x == pytest.approx(1.0) for x in rewards[len(rewards) - 2:-1])
    finally:
        e.close()


def test_state_hash_groups_and_cache(env: TextWorldEnv, cache: Path):
    a, _ = env.reset_result(seed=1)
    other = TextWorldEnv(cache_dir=cache)
    try:
        b, _ = other.reset_result(seed=1)
        assert a.state_hash == b.state_hash and a.text == b.text
    finally:
        other.close()
    r = env.step_result(env.oracle_action())
    assert r.observation.state_hash != a.state_hash
    assert (cache / "medium" / "seed-1" / "game.z8").is_file()


_SCRIPT = r"""
import json, sys
from arlarena_envs.textworld import TextWorldEnv
env = TextWorldEnv(cache_dir=sys.argv[1])
obs, info = env.reset_result(seed=0)
events = [[obs.text, obs.state_hash, obs.admissible_actions]]
while True:
    a = env.oracle_action()
    r = env.step_result(a)
    events.append([a, r.observation.text, r.observation.state_hash, r.reward])
    if r.done:
        break
print(json.dumps(events))
"""


def test_identical_games_and_episodes_across_processes(env: TextWorldEnv, cache: Path, tmp_path: Path):
    _oracle_episode(env, 0)  # make sure the shared cache holds seed 0
    outs = []
    for hashseed, cdir in (("1", cache), ("2", tmp_path / "fresh")):  # the second one generates anew
        proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(cdir)], capture_output=True, text=True, timeout=300,
                              cwd=REPO, env={**os.environ, "PYTHONHASHSEED": hashseed})
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1]
    fresh = tmp_path / "fresh" / "medium" / "seed-0"
    for name in ("game.z8", "game.json"):
        assert (fresh / name).read_bytes() == (cache / "medium" / "seed-0" / name).read_bytes()


def test_spec_pins_match_the_generator():
    pins = {d.name: d.sha256 for d in get_spec("arlarena/TextWorld-v0").data}
    assert "medium/seed-0" in pins
    preset, seed = "medium", 0
    assert game_digest(make_game(seed, preset)) == pins[f"{preset}/seed-{seed}"]


def test_bad_config_and_missing_extra(cache: Path):
    with pytest.raises(ConfigError, match="preset"):
        TextWorldEnv(cache_dir=cache, preset="impossible")
    with pytest.raises(ConfigError, match="reward_mode"):
        TextWorldEnv(cache_dir=cache, reward_mode="shaped")
    with pytest.raises(ConfigError):
        game_for(0, "impossible", cache)
    code = (
        "import sys; sys.modules['textworld'] = None\n"
        "import arlarena_envs.textworld\n"
        "from arlarena_envs.registry import make\n"
        "from arlarena_envs.errors import MissingDependencyError\n"
        "try:\n    make('arlarena/TextWorld-v0')\nexcept MissingDependencyError as e:\n    print('MDE', e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MDE" in proc.stdout and "textworld" in proc.stdout and "pip install" in proc.stdout


def test_pinned_game_with_other_digest_is_refused(cache: Path, tmp_path: Path):
    import shutil

    from arlarena_envs.errors import DataError

    folder = tmp_path / "medium" / "seed-0"
    shutil.copytree(game_for(0, "medium", cache).parent, folder)  # the module's cached game
    (folder / "digest.txt").write_text("0" * 64 + "\n")
    e = TextWorldEnv(cache_dir=tmp_path)
    try:
        with pytest.raises(DataError, match="pins"):
            e.reset(seed=0)
    finally:
        e.close()


@pytest.mark.slow
def test_games_generated_in_threads_at_once_are_the_pinned_games():
    """The env server resets sessions in worker threads; TextWorld's logic parser is one global
    tatsu parser, and two threads generating at once broke it ("pop from empty list") until
    generation took TEXTWORLD_LOCK."""
    import threading

    pin = {d.name: d.sha256 for d in get_spec("arlarena/TextWorld-v0").data}["easy/seed-0"]
    digests: list[str] = []
    errors: list[BaseException] = []

    def generate() -> None:
        try:
            digests.append(game_digest(make_game(0, "easy")))
        except BaseException as e:  # noqa: BLE001 - collected and reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=generate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert digests == [pin] * 3
