"""The offline stability evaluator: log readers (JSONL, CSV with verl names, verl console),
per-run analysis on synthetic logs with known collapses, seed variance, the report and the CLI."""

from __future__ import annotations

import csv
import json
import math

import pytest

from arlarena_envs.cli import main as cli_main
from arlarena_envs.contract import MetricRecord
from arlarena_envs.errors import DataError
from arlarena_envs.stability import MonitorConfig, StabilityReport, analyze_runs, load_run, write_report
from arlarena_envs.stability.analysis import area_under_curve, group_name, group_runs, last_lineage, spread, stability_score
from arlarena_envs.stability.logs import VERL_NAME_MAP
from arlarena_envs.stability.synthetic import cispo_collapse_run, entropy_collapse_run, healthy_run, write_run

# our field -> the verl name written in the CSV / console fixtures
_TO_VERL = {v: k for k, v in reversed(list(VERL_NAME_MAP.items()))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "healthy_seed0": write_run(root / "healthy_seed0", healthy_run(seed=0)).parent,
        "healthy_seed1": write_run(root / "healthy_seed1", healthy_run(seed=1)).parent,
        "healthy_seed2": write_run(root / "healthy_seed2", healthy_run(seed=2)).parent,
        "cispo_seed0": write_run(root / "cispo_seed0", cispo_collapse_run(seed=0)).parent,
        "cispo_seed1": write_run(root / "cispo_seed1", cispo_collapse_run(seed=1, collapse_step=100)).parent,
        "entropy_seed0": write_run(root / "entropy_seed0", entropy_collapse_run(seed=0)).parent,
    }


@pytest.fixture(scope="module")
def report(runs):
    return analyze_runs(list(runs.values()))


def _run(report, name):
    return next(r for r in report.runs if r.name == name)


def test_formulas():
    assert area_under_curve([1, 2, 3], [0.0, 1.0, 1.0]) == pytest.approx(0.75)
    assert area_under_curve([5], [0.4]) == 0.4
    assert stability_score(0.8, 0.4, 0.25) == pytest.approx(37.5)
    assert stability_score(0.0, 0.0, 0.0) == 0.0  # nothing learned, nothing to keep
    assert stability_score(0.8, 0.4, 0.25, learned=False) == 0.0
    s = spread([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.stderr) == pytest.approx((2.0, 1.0, 1 / math.sqrt(3)))
    assert spread([0.5]).std is None
    assert [group_name(n) for n in ("cispo_seed1", "cispo-s2", "cispo.seed3", "sampo")] == ["cispo"] * 3 + ["sampo"]


def test_healthy_runs_do_not_collapse(report):
    for name in ("healthy_seed0", "healthy_seed1", "healthy_seed2"):
        r = _run(report, name)
        assert not r.collapsed and r.alarm_counts == {} and r.critical_step_frac == 0
        assert r.peak_success > 0.75 and r.best_minus_last < 0.12
        assert r.stability_score > 85
        assert r.last_healthy_step == 200


def test_cispo_like_collapse(report):
    for name, known in (("cispo_seed0", 130), ("cispo_seed1", 100)):
        r = _run(report, name)
        assert r.collapsed and r.collapse_rule == "corroborated"
        assert known <= r.collapse_onset_step <= known + 12
        assert r.steps_to_collapse == r.collapse_onset_step  # first step is 1
        assert 0 <= r.detection_delay <= 5
        assert r.best_minus_last > 0.5 and r.stability_score < 15
        assert r.first_alarm_step["grad_norm_spike"] >= known
        assert r.grad_norm.max > 5 and r.valid_format_ratio.min < 0.5
        # finding 2: the neg-adv/low-IS mass is larger after the collapse than before
        assert r.neg_adv_low_is_after > r.neg_adv_low_is_before + 0.2
        assert r.clipfrac_total.p99 > r.clipfrac_total.p50
        assert r.last_healthy_step < r.collapse_onset_step


def test_entropy_collapse_run(report):
    r = _run(report, "entropy_seed0")
    assert not r.collapsed
    assert 85 <= r.first_alarm_step["entropy_collapse"] <= 108
    assert r.entropy_end < 0.1 * r.entropy_start
    assert r.stability_score < 60 < _run(report, "healthy_seed0").stability_score


def test_seed_variance_groups(report):
    groups = {g.group: g for g in report.groups}
    assert set(groups) == {"healthy", "cispo", "entropy"}
    h, c = groups["healthy"], groups["cispo"]
    assert h.runs == ["healthy_seed0", "healthy_seed1", "healthy_seed2"] and h.collapse_rate == 0.0
    assert c.collapse_rate == 1.0
    finals = [_run(report, n).final_success for n in h.runs]
    assert h.final_success.mean == pytest.approx(sum(finals) / 3)
    assert h.final_success.stderr == pytest.approx(h.final_success.std / math.sqrt(3))
    assert groups["entropy"].final_success.std is None


def test_report_files(report, tmp_path):
    report = report.model_copy(update={"runs": [_run(report, n) for n in ("healthy_seed0", "healthy_seed1", "cispo_seed0")]})
    report = report.model_copy(update={"groups": group_runs(report.runs)})
    md = write_report(report, tmp_path)
    text = md.read_text()
    assert "| cispo_seed0 |" in text and "**yes**" in text and "## Seed variance" in text
    again = StabilityReport.model_validate_json((tmp_path / "report.json").read_text())
    assert again == report
    for name in ("success.png", "seeds.png", "run_cispo_seed0.png", "run_healthy_seed1.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"({name})" in text


def _verl_rows(records):
    rows = []
    for r in records:
        row = {"training/global_step": r.step}
        for field, value in r.model_dump(exclude_none=True).items():
            if field in _TO_VERL:
                row[_TO_VERL[field]] = value
        rows.append(row)
    return rows


def test_csv_with_verl_names_matches_jsonl(tmp_path):
    recs = cispo_collapse_run(seed=3)
    rows = _verl_rows(recs)
    keys = sorted({k for row in rows for k in row})
    path = tmp_path / "wandb_export.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for row in reversed(rows):  # exports come in any order
            w.writerow(row)
    log = load_run(path)
    assert log.format == "csv" and [r.step for r in log.records] == [r.step for r in recs]
    assert log.records[10].grad_norm == pytest.approx(recs[10].grad_norm)
    assert log.records[10].valid_format_ratio == pytest.approx(recs[10].valid_format_ratio)
    write_run(tmp_path / "jsonl", recs)
    a, b = analyze_runs([path, tmp_path / "jsonl"]).runs
    assert a.collapsed and b.collapsed
    assert (a.collapse_onset_step, a.stability_score) == (b.collapse_onset_step, pytest.approx(b.stability_score))


def test_verl_console_log_and_missing_corroboration(tmp_path):
    lines = ["INFO something unrelated"]
    vals = [0.1, 0.3, 0.5, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1]
    for step, v in enumerate(vals, start=1):
        lines.append(f"step:{step} - episode/success_rate:{v} - timing_s/gen:12.5 - actor/lr:1e-06")
    (tmp_path / "train.log").write_text("\n".join(lines) + "\n")
    log = load_run(tmp_path)
    assert log.format == "console" and len(log.records) == len(vals)
    assert log.records[0].lr == 1e-6 and log.records[0].model_extra["timing_s/gen"] == 12.5
    r = analyze_runs([tmp_path]).runs[0]
    assert r.collapsed and r.collapse_rule == "success_only" and any("alone counts" in w for w in r.warnings)


def test_csv_empty_cells_are_missing_and_nan_is_kept(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("step,success,grad_norm\n1,0.5,\n2,,nan\n")
    recs = load_run(p).records
    assert recs[0].grad_norm is None and recs[1].success is None and math.isnan(recs[1].grad_norm)
    r = analyze_runs([p]).runs[0]
    assert r.first_alarm_step == {"grad_norm_nonfinite": 2}


def test_truncated_last_line_and_bad_lines(tmp_path):
    d = tmp_path / "run"
    write_run(d, healthy_run(steps=20))
    with (d / "metrics.jsonl").open("a") as f:
        f.write('{"step": 21, "succ')
    log = load_run(d)
    assert len(log.records) == 20 and "truncated" in log.warnings[0]
    (d / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(DataError, match=":2"):
        load_run(d)
    (d / "metrics.jsonl").write_text('{"success": 0.5}\n')
    with pytest.raises(DataError, match="no step column"):
        load_run(d)
    with pytest.raises(DataError, match="no such run"):
        load_run(tmp_path / "missing")


def test_rolled_back_run_uses_the_last_lineage(tmp_path):
    recs = cispo_collapse_run()
    resumed = recs[:145] + [r.model_copy(update={"step": r.step}) for r in healthy_run(steps=185)[120:]]
    assert [r.step for r in last_lineage(resumed)] == list(range(1, 186))
    write_run(tmp_path / "run", resumed)
    log = load_run(tmp_path / "run")
    assert "repeated RL steps" in log.warnings[0]
    r = analyze_runs([tmp_path / "run"]).runs[0]
    assert not r.collapsed and r.n_rl_steps == 185 and r.last_healthy_step == 185


def test_eval_only_success(tmp_path):
    recs = []
    for s in range(1, 41):
        recs.append(MetricRecord(step=s, grad_norm=0.3))
        if s % 2 == 0:
            recs.append(MetricRecord(step=s, phase="eval", eval_success=min(0.8, s / 20)))
    write_run(tmp_path / "r", recs)
    r = analyze_runs([tmp_path / "r"]).runs[0]
    assert r.success_field == "eval_success" and r.peak_success == pytest.approx(0.8) and not r.collapsed


def test_cli(tmp_path, capsys):
    out = tmp_path / "report"
    rc = cli_main(["stability", "--example", str(tmp_path / "runs"), "--out", str(out), "--no-plots", "--set", "window=5"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "cispo_collapse_seed0" in printed and "report:" in printed
    data = json.loads((out / "report.json").read_text())
    assert {r["name"]: r["collapsed"] for r in data["runs"]} == {
        "healthy_seed0": False, "healthy_seed1": False, "cispo_collapse_seed0": True, "entropy_collapse_seed0": False,
    }
    rc = cli_main(["stability", str(tmp_path / "runs" / "cispo_collapse_seed0"), "--out", str(out), "--no-plots", "--fail-on-collapse"])
    assert rc == 3
    assert cli_main(["stability", "--out", str(out)]) == 1  # no runs: a typed error, exit 1
    assert cli_main(["stability", str(tmp_path / "runs" / "healthy_seed0"), "--set", "window=0", "--no-plots", "--out", str(out)]) == 1


def test_config_file(tmp_path):
    from arlarena_envs.stability.cli import load_config

    p = tmp_path / "t.yaml"
    p.write_text("window: 7\nactions: {collapse: stop}\n")
    cfg = load_config(str(p), ["sustain=4"])
    assert cfg == MonitorConfig(window=7, sustain=4, actions={"collapse": "stop"})


def test_docs_list_every_verl_name():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "stability.md").read_text()
    for name, field in VERL_NAME_MAP.items():
        assert f"| `{name}` | `{field}` |" in doc, name
