"""Leaderboard evaluation: protocol, row figures, resume, provenance checks, the aggregator."""

from __future__ import annotations

import json
import math

import pytest

from arlarena_envs.cli import main as cli_main
from arlarena_envs.contract import SamplingParams
from arlarena_envs.errors import ConfigError, EnvNotFoundError
from arlarena_envs.leaderboard import (
    EpisodeResult,
    ProvenanceMismatchError,
    Stat,
    evaluate,
    load_rows,
    make_policy,
    render_markdown,
    summarize,
    validate_rows,
)
from arlarena_envs.leaderboard.models import data_checksum
from arlarena_envs.registry import get_spec

SOKO = "arlarena/Sokoban-v0"


def test_stat_is_mean_and_standard_error():
    s = Stat.of([1.0, 0.0, 1.0, 1.0])
    assert s.mean == 0.75 and s.stderr == pytest.approx(math.sqrt(0.25 / 4))
    assert Stat.of([0.3]).stderr == 0.0 and Stat.of([]).n == 0


def test_full_protocol_rows_random_and_oracle(tmp_path):
    spec = get_spec(SOKO)
    oracle = evaluate(SOKO, "oracle", out_dir=tmp_path)
    random = evaluate(SOKO, "random", out_dir=tmp_path)
    assert oracle.episodes == random.episodes == spec.leaderboard.episodes
    assert oracle.success.mean == 1.0 and oracle.parse_rates["ok"] == 1.0
    assert 0.0 <= random.success.mean < 0.5 and random.steps.mean > oracle.steps.mean
    p = oracle.provenance
    assert p.overrides == {} and p.golden_fingerprint == spec.fingerprint() and p.env_version == 0
    assert p.template_id == "sokoban/v1" and p.split == "eval" and p.sampling == spec.leaderboard.sampling
    assert p.data_checksum == data_checksum(spec) and p.checkpoint_rule == "n/a" and p.package_version
    files = sorted((tmp_path / "Sokoban-v0" / "oracle" / "episodes").glob("ep_*.json"))
    assert len(files) == spec.leaderboard.episodes
    e = EpisodeResult.model_validate_json(files[3].read_text())
    assert (e.index, e.seed, e.split, e.task_index) == (3, 3, "eval", 3) and e.won and len(e.turns) == e.steps
    # deterministic: a second evaluation (from scratch) gives the identical row
    again = evaluate(SOKO, "random", out_dir=tmp_path / "again")
    assert again.result_dump() == random.result_dump()
    validate_rows([oracle, random])  # comparable with the current spec


def test_resume_skips_done_episodes(tmp_path):
    played = []
    row = evaluate(SOKO, "random", episodes=6, out_dir=tmp_path, progress=lambda d, n, e: played.append(e.index))
    assert played == list(range(6))
    ep_dir = tmp_path / "Sokoban-v0" / "random" / "episodes"
    (ep_dir / "ep_00002.json").unlink()
    (ep_dir / "ep_00004.json").unlink()
    played.clear()
    again = evaluate(SOKO, "random", episodes=6, out_dir=tmp_path, progress=lambda d, n, e: played.append(e.index))
    assert played == [2, 4] and again.result_dump() == row.result_dump()
    played.clear()
    more = evaluate(SOKO, "random", episodes=8, out_dir=tmp_path, progress=lambda d, n, e: played.append(e.index))
    assert played == [6, 7] and more.episodes == 8
    # an episode file from another protocol is refused
    with pytest.raises(ProvenanceMismatchError, match="another protocol"):
        evaluate(SOKO, "random", episodes=6, max_steps=10, out_dir=tmp_path)
    fresh = evaluate(SOKO, "random", episodes=2, max_steps=10, out_dir=tmp_path, resume=False)
    assert fresh.steps.mean <= 10 and fresh.provenance.overrides == {"episodes": 2, "max_steps": 10}
    assert fresh.provenance.protocol.max_steps == 10


def test_overridden_rows_are_refused_by_the_aggregator(tmp_path):
    row = evaluate(SOKO, "oracle", episodes=3, out_dir=tmp_path)
    with pytest.raises(ProvenanceMismatchError) as ei:
        validate_rows([row])
    assert set(ei.value.fields) == {"episodes", "overrides"}
    ok, notes = validate_rows([row], skip_stale=True)
    assert ok == [] and "does not match" in notes[0]


def _full_row(tmp_path, policy="oracle"):
    return evaluate(SOKO, policy, out_dir=tmp_path)


@pytest.mark.parametrize(
    "field,value",
    [
        ("golden_fingerprint", "0000000000000000"),
        ("data_checksum", "ffff"),
        ("env_version", 7),
        ("template_id", "sokoban/v0"),
        ("split", "train"),
    ],
)
def test_stale_provenance_is_a_typed_error(tmp_path_factory, field, value):
    row = _cached_row(tmp_path_factory)
    stale = row.model_copy(update={"provenance": row.provenance.model_copy(update={field: value})})
    with pytest.raises(ProvenanceMismatchError) as ei:
        validate_rows([row, stale])
    assert ei.value.fields == [field]
    assert "arlarena leaderboard evaluate --env arlarena/Sokoban-v0" in str(ei.value)


def test_changed_protocol_or_sampling_is_stale(tmp_path_factory):
    row = _cached_row(tmp_path_factory)
    p = row.provenance
    for upd, field in (
        ({"protocol": p.protocol.model_copy(update={"history_length": 5})}, "protocol"),
        ({"sampling": SamplingParams(temperature=1.0)}, "sampling"),
    ):
        with pytest.raises(ProvenanceMismatchError) as ei:
            validate_rows([row.model_copy(update={"provenance": p.model_copy(update=upd)})])
        assert ei.value.fields == [field]


def test_unregistered_env_row_is_refused(tmp_path_factory):
    row = _cached_row(tmp_path_factory)
    with pytest.raises(EnvNotFoundError):
        validate_rows([row.model_copy(update={"env_id": "arlarena/Nope-v0"})])


_ROW = {}


def _cached_row(tmp_path_factory):
    if "row" not in _ROW:
        _ROW["row"] = evaluate(SOKO, "oracle", out_dir=tmp_path_factory.mktemp("lb"))
    return _ROW["row"]


def test_per_task_type_breakdown_and_parse_rates(tmp_path):
    row = _ROW.get("row") or evaluate(SOKO, "oracle", episodes=1, out_dir=tmp_path)
    eps = [
        EpisodeResult(index=i, seed=i, split="eval", task_index=i, task="t", task_type=t, won=w, score=float(w),
                      total_reward=float(w), steps=s, truncated=not w, parse_counts=pc, episode_key="k")
        for i, (t, w, s, pc) in enumerate(
            [("pick", True, 4, {"ok": 4}), ("pick", False, 10, {"ok": 8, "no_tag": 2}), ("heat", True, 6, {"ok": 5, "inadmissible": 1})]
        )
    ]
    r = summarize(eps, row.provenance, "x", "random")
    assert r.per_task_type["pick"].episodes == 2 and r.per_task_type["pick"].success.mean == 0.5
    assert r.per_task_type["heat"].success == Stat(n=1, mean=1.0, stderr=0.0)
    assert r.parse_rates["ok"] == pytest.approx(17 / 20) and r.parse_rates["no_tag"] == pytest.approx(0.1)
    assert r.parse_rates["empty"] == 0.0
    assert r.steps.mean == pytest.approx(20 / 3)
    md = render_markdown([r])
    assert "## Success by task type" in md and "| pick | 2 | 0.500 ± 0.500 |" in md


def test_policy_specs():
    spec = get_spec(SOKO)
    assert make_policy("random", spec).kind == "random"
    assert make_policy("oracle", spec).kind == "oracle"
    with pytest.raises(ConfigError, match="unknown policy"):
        make_policy("gpt", spec)
    with pytest.raises(ConfigError, match="no such model directory"):
        make_policy("hf:/nonexistent/model", spec)
    p = make_policy("openai:Qwen/Qwen3-4B@http://127.0.0.1:9/v1", spec)
    assert (p.model, p.base_url) == ("Qwen/Qwen3-4B", "http://127.0.0.1:9/v1")


def test_cli_evaluate_and_render(tmp_path, capsys):
    res, out = tmp_path / "results", tmp_path / "runs"
    assert cli_main(["leaderboard", "evaluate", "--env", SOKO, "--policy", "oracle", "--out", str(out), "--results", str(res), "--quiet"]) == 0
    assert cli_main(["leaderboard", "evaluate", "--env", SOKO, "--policy", "random", "--out", str(out), "--results", str(res), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "success 1.000 ± 0.000" in printed
    assert sorted(p.name for p in (res / "Sokoban-v0").iterdir()) == ["oracle.json", "random.json"]
    assert cli_main(["leaderboard", "render", "--results", str(res)]) == 0
    md = (res / "LEADERBOARD.md").read_text()
    assert "| Sokoban-v0 | oracle | oracle | 1.000 ± 0.000 |" in md
    assert "<table id=\"leaderboard\">" in (res / "leaderboard.html").read_text()
    # a stale row makes render fail (exit 1 with the typed error) unless --skip-stale
    row = json.loads((res / "Sokoban-v0" / "random.json").read_text())
    row["provenance"]["golden_fingerprint"] = "deadbeefdeadbeef"
    (res / "Sokoban-v0" / "random.json").write_text(json.dumps(row))
    assert cli_main(["leaderboard", "render", "--results", str(res)]) == 1
    assert "golden_fingerprint" in capsys.readouterr().err
    assert cli_main(["leaderboard", "render", "--results", str(res), "--skip-stale"]) == 0
    assert len(load_rows(res)) == 2 and "oracle" in (res / "LEADERBOARD.md").read_text()


def test_stability_score_goes_in_the_row(tmp_path):
    from arlarena_envs.stability.synthetic import cispo_collapse_run, write_run

    run = write_run(tmp_path / "cispo_seed0", cispo_collapse_run()).parent
    row = evaluate(SOKO, "oracle", episodes=2, out_dir=tmp_path / "lb", stability_run=run)
    assert row.stability_score is not None and row.stability_score < 15 and row.stability_run == str(run)
    assert "| 3.8 |" in render_markdown([row]) or f"| {row.stability_score:.1f} |" in render_markdown([row])


def test_every_committed_row_matches_the_current_specs():
    """results/ holds the rows of the committed leaderboard; rerun benchmarks/make_leaderboard_rows.py when this fails."""
    from pathlib import Path

    res = Path(__file__).resolve().parent.parent / "results"
    if not res.is_dir() or not list(res.glob("*/*.json")):
        pytest.skip("no committed rows under results/")
    rows = load_rows(res)
    validate_rows(rows, results_dir=res)  # trained rows: also against their artefacts under results/runs/
    assert {r.policy for r in rows} >= {"random", "oracle"}


def test_parallel_workers_give_the_same_files_and_row(tmp_path):
    serial = evaluate(SOKO, "random", episodes=6, out_dir=tmp_path / "a")
    parallel = evaluate(SOKO, "random", episodes=6, out_dir=tmp_path / "b", workers=2)
    assert parallel.result_dump() == serial.result_dump()
    for f in sorted((tmp_path / "a" / "Sokoban-v0" / "random" / "episodes").glob("*.json")):
        a = EpisodeResult.model_validate_json(f.read_text())
        b = EpisodeResult.model_validate_json((tmp_path / "b" / "Sokoban-v0" / "random" / "episodes" / f.name).read_text())
        assert a.model_copy(update={"elapsed_s": 0}) == b.model_copy(update={"elapsed_s": 0})


@pytest.mark.slow
def test_remote_backend_gives_the_same_row(tmp_path):
    """Against `arlarena serve` on loopback: the row equals the in-process one."""
    import subprocess
    import sys
    import time

    pytest.importorskip("fastapi")
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "arlarena_envs.cli", "serve", SOKO, "--port", "0", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert ready.exists(), "env server did not start"
        url = json.loads(ready.read_text())["url"]
        remote = evaluate(SOKO, "random", episodes=4, out_dir=tmp_path / "r", backend="remote", url=url)
        local = evaluate(SOKO, "random", episodes=4, out_dir=tmp_path / "l")
        assert remote.result_dump() == local.result_dump()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_alfworld_rows_break_down_by_task_type(tmp_path):
    pytest.importorskip("alfworld")
    try:
        get_spec("arlarena/ALFWorld-v0")
    except EnvNotFoundError:
        pytest.skip("ALFWorld-v0 is not registered")
    row = evaluate("arlarena/ALFWorld-v0", "oracle", episodes=2, out_dir=tmp_path)
    assert sum(t.episodes for t in row.per_task_type.values()) == 2
    assert all(t.startswith(("pick", "look")) for t in row.per_task_type)
    assert "## Success by task type" in render_markdown([row])
