import json
import subprocess
import sys

import pytest

from arlarena_envs.checker import check_env, make_golden, scripted_actions, transcript_digest
from arlarena_envs.registry import make


def test_sokoban_passes_every_check():
    report = check_env("arlarena/Sokoban-v0", resets=200)
    assert report.passed, report.table()
    assert {r.name for r in report.results} >= {"golden", "processes", "threads", "resources"}


def test_golden_detects_behaviour_change(monkeypatch):
    import arlarena_envs.sokoban.env as sok

    monkeypatch.setattr(sok, "STEP_REWARD", -0.2)
    report = check_env("arlarena/Sokoban-v0", only=["golden"])
    assert not report.passed and "bump its version" in report.results[0].detail


def test_golden_is_reproducible():
    g1 = make_golden("arlarena/Sokoban-v0")
    g2 = make_golden("arlarena/Sokoban-v0")
    assert g1 == g2 and len(g1) == 4


def test_transcripts_differ_across_seeds():
    env = make("arlarena/Sokoban-v0").unwrapped
    acts = scripted_actions(env, 0, "train", 10)
    assert transcript_digest(env, 0, "train", acts) != transcript_digest(env, 1, "train", acts)


def test_cli_check_exit_codes(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "arlarena_envs.cli", "check", "arlarena/Sokoban-v0", "--only", "golden", "info_schema", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["env_id"] == "arlarena/Sokoban-v0"
    bad = subprocess.run([sys.executable, "-m", "arlarena_envs.cli", "check", "arlarena/Nope-v0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "no env" in bad.stderr
