"""Leaderboard rows that contradict themselves are refused, smoke-test rows never become
comparable rows, provenance mismatches name the differing field, and a killed parallel
evaluation leaves no worker behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arlarena_envs.cli import main as cli_main
from arlarena_envs.errors import DataError
from arlarena_envs.leaderboard import ProvenanceMismatchError, Stat, evaluate, render, validate_rows
from arlarena_envs.leaderboard.models import RowInconsistentError, digest_records

SOKO = "arlarena/Sokoban-v0"
REPO = Path(__file__).resolve().parents[1]
_CACHE: dict = {}


def _row(tmp_path_factory):
    if "row" not in _CACHE:
        _CACHE["row"] = evaluate(SOKO, "oracle", out_dir=tmp_path_factory.mktemp("lb"))
    return _CACHE["row"]


def test_row_carries_its_records_and_passes(tmp_path_factory):
    row = _row(tmp_path_factory)
    assert len(row.records) == row.episodes == row.provenance.episodes
    assert row.records_digest == digest_records(row.records)
    assert validate_rows([row])[0] == [row]


def test_edited_figures_are_refused(tmp_path_factory):
    row = _row(tmp_path_factory)
    edited = row.model_copy(update={"success": Stat(n=row.success.n, mean=0.5, stderr=row.success.stderr)})
    with pytest.raises(RowInconsistentError, match="success differ"):
        validate_rows([edited])


def test_edited_records_are_refused(tmp_path_factory):
    row = _row(tmp_path_factory)
    recs = [r.model_copy(update={"won": False}) if r.index == 0 else r for r in row.records]
    with pytest.raises(RowInconsistentError, match="digest"):
        validate_rows([row.model_copy(update={"records": recs})])
    # digest recomputed too: the figures no longer follow from the records
    with pytest.raises(RowInconsistentError, match="success"):
        validate_rows([row.model_copy(update={"records": recs, "records_digest": digest_records(recs)})])


def test_episode_count_must_agree(tmp_path_factory):
    row = _row(tmp_path_factory)
    with pytest.raises(RowInconsistentError, match="disagree"):
        validate_rows([row.model_copy(update={"episodes": row.episodes - 1})])
    fewer = row.records[:-1]
    with pytest.raises(RowInconsistentError, match="disagree"):
        validate_rows([row.model_copy(update={"records": fewer, "records_digest": digest_records(fewer)})])


def test_row_without_records_is_refused(tmp_path_factory):
    row = _row(tmp_path_factory)
    with pytest.raises(RowInconsistentError, match="no episode records"):
        validate_rows([row.model_copy(update={"records": [], "records_digest": ""})])


def test_duplicate_policy_rows_are_refused(tmp_path_factory):
    row = _row(tmp_path_factory)
    with pytest.raises(RowInconsistentError, match="two rows"):
        validate_rows([row, row])


def _write(folder: Path, name: str, row) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(row.model_dump_json(indent=2), encoding="utf-8")


def test_row_in_another_envs_folder_is_refused(tmp_path, tmp_path_factory):
    _write(tmp_path / "WebShop-v0", "oracle.json", _row(tmp_path_factory))
    with pytest.raises(RowInconsistentError, match="folder of WebShop-v0"):
        render(tmp_path, None, None)


def test_training_result_folders_beside_the_rows_are_not_rows(tmp_path, tmp_path_factory):
    _write(tmp_path / "Sokoban-v0", "oracle.json", _row(tmp_path_factory))
    (tmp_path / "comparison").mkdir()
    (tmp_path / "comparison" / "summary.json").write_text(json.dumps({"methods": ["grpo"]}))
    rows, _ = render(tmp_path, None, None)
    assert [(r.env_id, r.policy) for r in rows] == [(SOKO, "oracle")]
    (tmp_path / "Sokoban-v0" / "broken.json").write_text("{}")  # inside an env folder: still refused
    with pytest.raises(DataError, match="not a leaderboard row"):
        render(tmp_path, None, None)


def test_overridden_rows_are_skipped_with_a_note_not_failing_the_folder(tmp_path, tmp_path_factory):
    smoke = evaluate(SOKO, "random", episodes=3, out_dir=tmp_path / "runs")
    _write(tmp_path / "res" / "Sokoban-v0", "random.json", smoke)
    _write(tmp_path / "res" / "Sokoban-v0", "oracle.json", _row(tmp_path_factory))
    rows, notes = render(tmp_path / "res", tmp_path / "lb.md", None)
    assert [r.policy for r in rows] == ["oracle"]
    assert len(notes) == 1 and "overrides" in notes[0] and "random.json" in notes[0]
    assert "overrides" in (tmp_path / "lb.md").read_text()


def test_cli_never_copies_an_overridden_row(tmp_path, capsys):
    res = tmp_path / "results"
    argv = ["leaderboard", "evaluate", "--env", SOKO, "--policy", "random", "--episodes", "2",
            "--out", str(tmp_path / "runs"), "--results", str(res), "--quiet"]
    assert cli_main(argv) == 0
    assert not (res / "Sokoban-v0").exists()
    assert "not copied" in capsys.readouterr().err


def test_provenance_mismatch_names_the_leaf_in_full(tmp_path_factory):
    row = _row(tmp_path_factory)
    p = row.provenance
    stale = row.model_copy(update={"provenance": p.model_copy(update={"protocol": p.protocol.model_copy(update={"max_steps": 7})})})
    with pytest.raises(ProvenanceMismatchError) as ei:
        validate_rows([stale])
    assert f"protocol.max_steps: row 7 != spec {p.protocol.max_steps}" in str(ei.value)
    assert "..." not in str(ei.value)


def _alive(pids: list[int]) -> list[int]:
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_parallel_evaluation_leaves_no_workers(tmp_path, sig):
    psutil = pytest.importorskip("psutil")
    cmd = [sys.executable, "-m", "arlarena_envs.cli", "leaderboard", "evaluate", "--env", SOKO, "--policy", "random",
           "--workers", "2", "--out", str(tmp_path), "--results", "", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    try:
        deadline, kids = time.monotonic() + 60, []
        while time.monotonic() < deadline and len(kids) < 2 and proc.poll() is None:
            kids = [k.pid for k in psutil.Process(proc.pid).children(recursive=True)]
            time.sleep(0.05)
        assert len(kids) >= 2, "the evaluation finished before its workers were seen"
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(kids):
            time.sleep(0.1)
        left = _alive(kids)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert left == []
    finally:
        if proc.poll() is None:
            proc.kill()
