"""The embedded ALFWorld generator: deterministic, balanced, split pools, pinned checksums.

Pure Python: these tests need neither alfworld's engine nor textworld (only alfworld's logic
files, which the generator copies into each game)."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("alfworld")

from arlarena_envs.alfworld import generator as gen  # noqa: E402
from arlarena_envs.registry import get_spec  # noqa: E402


def test_same_id_same_bytes_and_ids_differ():
    a, b = gen.generate_game(17), gen.generate_game(17)
    assert a.files() == b.files() and a.sha256() == b.sha256()
    shas = {gen.generate_game(i).sha256() for i in range(30)}
    assert len(shas) == 30


def test_task_types_are_balanced_and_goals_match_templates():
    for i in range(24):
        g = gen.generate_game(i)
        assert g.task_type == gen.TASK_TYPES[i % 6]
        assert g.traj_data["task_type"] == g.task_type
        assert "Your task is to: " + g.goal in g.game["grammar"]
        assert g.game["solvable"] is True and g.walkthrough


def test_pools_use_disjoint_layouts_and_held_out_targets():
    seen = [gen.generate_game(i, "seen") for i in range(60)]
    unseen = [gen.generate_game(i, "unseen") for i in range(60)]
    assert {g.layout_seed for g in seen}.isdisjoint({g.layout_seed for g in unseen})
    assert all(g.object_target not in gen.HELD_OUT_TARGETS for g in seen)
    assert all(g.object_target in gen.HELD_OUT_TARGETS for g in unseen)
    # unseen rooms are bigger on average (more receptacles to search)
    def n_receptacles(g):
        return g.game["pddl_problem"].count("- receptacle")
    assert sum(map(n_receptacles, unseen)) > sum(map(n_receptacles, seen))


def test_no_game_is_won_at_the_start():
    # the goal object never starts inside a receptacle of the goal class
    for i in range(60):
        g = gen.generate_game(i)
        if not g.parent_target:
            continue
        prob = g.game["pddl_problem"].split("(:goal")[0]  # the initial state only
        parents = set(re.findall(rf"\(receptacleType (\S+) {g.parent_target}Type\)", prob))
        targets = set(re.findall(rf"\(objectType (\S+) {g.object_target}Type\)", prob))
        for o, r in re.findall(r"\(inReceptacle (\S+) (\S+)\)", prob):
            assert not (o in targets and r in parents), (i, o, r)


def test_folder_layout_is_what_alfworld_loads(tmp_path):
    g = gen.generate_game(3)
    path = gen.write_game(g, tmp_path)
    assert path.name == "game.tw-pddl" and (path.parent / "traj_data.json").exists()
    rel = path.relative_to(tmp_path).as_posix()
    assert "movable" not in rel and "Sliced" not in rel  # alfworld's loader would skip those
    data = json.loads(path.read_text())
    assert set(data) == {"pddl_domain", "grammar", "pddl_problem", "solvable", "walkthrough"}
    before = path.stat().st_mtime_ns
    gen.write_game(g, tmp_path)  # idempotent: same bytes are not rewritten
    assert path.stat().st_mtime_ns == before
    path.write_text("corrupt")
    gen.write_game(g, tmp_path)  # other bytes are replaced
    assert json.loads(path.read_text()) == data


def test_two_threads_writing_one_game_do_not_collide(tmp_path, monkeypatch):
    """The env server resets sessions in threads, so two resets of the same game can write it at
    once in one process. Both threads write their temporary files before either renames (a
    barrier in os.replace): with one temporary name per process the second rename found its file
    gone (seen in a container parity run)."""
    import os
    import threading

    g = gen.generate_game(3)
    barrier = threading.Barrier(2, timeout=20)
    real_replace = os.replace

    def replace_after_both_wrote(src, dst):
        if ".tmp" in str(src) and str(src).startswith(str(tmp_path)):
            barrier.wait()
        return real_replace(src, dst)

    monkeypatch.setattr(gen.os, "replace", replace_after_both_wrote)
    errors: list = []

    def write():
        try:
            gen.write_game(g, tmp_path)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    path = tmp_path / f"gen-v{gen.GENERATOR_VERSION}" / g.pool / g.folder / "game.tw-pddl"
    assert json.loads(path.read_text())["pddl_problem"] == g.game["pddl_problem"]
    assert not list(path.parent.glob("*.tmp*"))


def test_display_names_follow_alfworlds_demangler():
    ids = ["Cabinet_bar__plus_01_dot_00_bar__plus_00_dot_00_bar__plus_00_dot_00",
           "Cabinet_bar__minus_01_dot_00_bar__plus_00_dot_00_bar__plus_00_dot_00",
           "Sink_bar__plus_00_dot_10_bar__plus_00_dot_00_bar__plus_00_dot_00_bar_SinkBasin"]
    names = gen._display_names(ids)
    # sorted ids take the numbers from the top: "_minus_" < "_plus_"
    assert names[ids[1]] == "cabinet 2" and names[ids[0]] == "cabinet 1"
    assert names[ids[2]] == "sinkbasin 1"


def test_spec_pins_match_the_generator():
    spec = get_spec("arlarena/ALFWorld-v0")
    pins = {d.name: d.sha256 for d in spec.data}
    assert pins, "the spec records checksums of generated games"
    for name, sha in pins.items():
        _, pool, task_id = name.split("/")
        assert gen.generate_game(int(task_id), pool).sha256() == sha, name
