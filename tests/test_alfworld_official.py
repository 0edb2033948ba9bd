"""The official-split loader: counts checked, alfworld's skip rules, clear errors (no engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arlarena_envs.alfworld.official import collect_official_games, resolve_data_root, scan_split
from arlarena_envs.errors import DataError

SAMPLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "alfworld-official-sample"


def _trial(root: Path, split: str, task: str, trial: str, *, game: bool = True, solvable: bool = True,
           task_type: str = "pick_and_place_simple", corrupt: bool = False) -> Path:
    d = root / "json_2.1.1" / split / task / trial
    d.mkdir(parents=True)
    (d / "traj_data.json").write_text(json.dumps({"task_type": task_type, "pddl_params": {}}))
    if game:
        body = "{not json" if corrupt else json.dumps(
            {"pddl_domain": "(define)", "grammar": "{}", "pddl_problem": "(define)", "solvable": solvable})
        (d / "game.tw-pddl").write_text(body)
    return d


@pytest.fixture
def fixture_root(tmp_path: Path) -> Path:
    # the data root's own path contains "movable": alfworld would drop every game here
    root = tmp_path / "movable_data"
    for i in (3, 1, 2):
        _trial(root, "valid_seen", f"pick_and_place_simple-Pen-None-Desk-{i}", f"trial_T{i}")
    _trial(root, "valid_seen", "pick_and_place_with_movable_recep-Pen-Cup-Desk-1", "trial_Tm")
    _trial(root, "valid_seen", "pick_clean_then_place_in_recep-AppleSliced-None-Desk-1", "trial_Ts")
    _trial(root, "valid_seen", "pick_and_place_simple-Pen-None-Desk-9", "trial_Tu", solvable=False)
    return root


def test_count_sorting_and_skip_rules(fixture_root: Path):
    games = collect_official_games(fixture_root, "valid_seen", expected=3)
    assert [g.parent.parent.name[-1] for g in games] == ["1", "2", "3"]  # sorted, not os.walk order
    scan = scan_split(fixture_root / "json_2.1.1" / "valid_seen")
    assert len(scan.skipped_by_rule) == 2 and len(scan.unsolvable) == 1


def test_missing_game_is_a_clear_error(fixture_root: Path):
    _trial(fixture_root, "valid_seen", "pick_and_place_simple-Pen-None-Desk-7", "trial_T7", game=False)
    _trial(fixture_root, "valid_seen", "pick_and_place_simple-Pen-None-Desk-8", "trial_T8", corrupt=True)
    with pytest.raises(DataError) as e:
        collect_official_games(fixture_root, "valid_seen", expected=5)
    msg = str(e.value)
    assert "found 3 playable games" in msg and "expected 5" in msg
    assert "1 trial folders have no game.tw-pddl" in msg and "Desk-7" in msg
    assert "1 files could not be read" in msg and "ALFWORLD_DATA" in msg


def test_official_count_is_the_default(fixture_root: Path):
    with pytest.raises(DataError, match="expected 140"):
        collect_official_games(fixture_root, "valid_seen")
    with pytest.raises(DataError, match="found 0 playable games.*expected 134"):
        collect_official_games(fixture_root, "valid_unseen")


def test_data_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    with pytest.raises(DataError, match="ALFWORLD_DATA"):
        resolve_data_root(None)
    with pytest.raises(DataError, match="no json_2.1.1"):
        resolve_data_root(tmp_path)
    (tmp_path / "json_2.1.1").mkdir()
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    assert resolve_data_root(tmp_path / "json_2.1.1") == tmp_path


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="shared official ALFWorld sample absent")
def test_shared_sample_counts():
    # 14 valid_seen trials: alfworld keeps 12 (one Sliced, one without a game file)
    assert len(collect_official_games(SAMPLE, "valid_seen", expected=12)) == 12
    assert len(collect_official_games(SAMPLE, "valid_unseen", expected=12)) == 12
    assert len(collect_official_games(SAMPLE, "official_train", expected=12)) == 12
    with pytest.raises(DataError, match="no game.tw-pddl"):
        collect_official_games(SAMPLE, "valid_seen")  # 12 != 140
