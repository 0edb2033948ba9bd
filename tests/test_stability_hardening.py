"""Stability reader/analysis hardening: step-0 validation rows, validation lines of a step,
rows split over lines, never-learned runs, plots of metrics that were not logged."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from arlarena_envs.contract import MetricRecord
from arlarena_envs.stability import analyze_runs, load_run, write_report
from arlarena_envs.stability.logs import VERL_NAME_MAP
from arlarena_envs.stability.report import plot_run
from arlarena_envs.stability.synthetic import cispo_collapse_run, healthy_run, write_run

_TO_VERL = {v: k for k, v in reversed(list(VERL_NAME_MAP.items()))}


def _verl_rows(records: list[MetricRecord]) -> list[dict]:
    out = []
    for r in records:
        d = {"training/global_step": r.step}
        for k, v in r.model_dump(exclude={"step", "phase"}).items():
            if v is not None:
                d[_TO_VERL.get(k, k)] = v
        out.append(d)
    return out


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r})
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def _summary(path):
    r = analyze_runs([path]).runs[0]
    return r.success_field, r.collapsed, r.collapse_onset_step, r.collapse_detected_step, r.n_rl_steps


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_step0_validation_row_does_not_take_over_the_success_signal(tmp_path, fmt):
    rows = _verl_rows(cispo_collapse_run())
    write = _jsonl if fmt == "jsonl" else _csv
    plain = write(tmp_path / "plain" / f"metrics.{fmt}", rows)
    # verl validates before training (val_before_train): a step-0 row with validation metrics only
    with_val = write(tmp_path / "val" / f"metrics.{fmt}", [{"training/global_step": 0, "val/success_rate": 0.1, "_runtime": 3.0}] + rows)
    assert _summary(with_val) == _summary(plain)
    assert _summary(plain)[0] == "success" and _summary(plain)[1]
    assert [r.phase for r in load_run(with_val).records[:1]] == ["eval"]


def test_validation_line_of_a_step_is_not_a_rollback(tmp_path):
    recs = healthy_run(steps=60)
    rows = []
    for d in _verl_rows(recs):
        rows.append(d)
        if d["training/global_step"] % 10 == 0:  # validation logged on its own line, same step
            rows.append({"training/global_step": d["training/global_step"], "val/success_rate": 0.5})
    log = load_run(_jsonl(tmp_path / "r" / "metrics.jsonl", rows))
    assert not any("repeated RL steps" in w for w in log.warnings)
    rl = [r for r in log.records if r.phase == "rl"]
    assert [r.step for r in rl] == list(range(1, 61)) and all(r.grad_norm is not None for r in rl)
    r = analyze_runs([tmp_path / "r" / "metrics.jsonl"]).runs[0]
    assert r.n_rl_steps == 60 and r.grad_norm.n == 60 and r.success_field == "success"


def test_a_row_split_over_lines_is_one_row_and_a_repeated_metric_is_a_rollback(tmp_path):
    rows = []
    for d in _verl_rows(healthy_run(steps=40)):
        step = d.pop("training/global_step")
        half = dict(list(d.items())[: len(d) // 2])
        rest = {k: v for k, v in d.items() if k not in half}
        rows += [{"training/global_step": step, **half}, {"training/global_step": step, **rest}]
    log = load_run(_jsonl(tmp_path / "split" / "metrics.jsonl", rows))
    assert [r.step for r in log.records] == list(range(1, 41)) and not log.warnings
    again = rows + [{"training/global_step": 30, "actor/grad_norm": 0.2}]  # step 30 re-logged: a rollback
    log = load_run(_jsonl(tmp_path / "rb" / "metrics.jsonl", again))
    assert any("repeated RL steps" in w for w in log.warnings)


def _flat_run(p: float, seed: int, steps: int = 200) -> list[MetricRecord]:
    rng = np.random.default_rng(seed)
    return [
        MetricRecord(step=s, success=float(rng.binomial(32, p)) / 32, grad_norm=float(0.3 + 0.05 * rng.random()),
                     entropy=float(1.0 + 0.05 * rng.random()))
        for s in range(1, steps + 1)
    ]


@pytest.mark.parametrize("p", [0.05, 0.3, 0.6])
def test_a_run_that_never_learned_scores_zero_not_noise(tmp_path, p):
    scores = []
    for seed in range(4):
        run = write_run(tmp_path / f"flat_seed{seed}", _flat_run(p, seed)).parent
        r = analyze_runs([run]).runs[0]
        assert not r.learned and any("never learned" in w for w in r.warnings)
        scores.append(r.stability_score)
    assert scores == [0.0] * 4


def test_runs_that_learned_keep_their_scores(tmp_path):
    r = analyze_runs([write_run(tmp_path / "healthy", healthy_run()).parent]).runs[0]
    assert r.learned and r.learning_gain > 0.5 and r.stability_score > 85
    c = analyze_runs([write_run(tmp_path / "cispo", cispo_collapse_run()).parent]).runs[0]
    assert c.learned and c.collapsed and c.stability_score < 15


def test_plots_say_which_metrics_were_not_logged(tmp_path):
    recs = [r.model_copy(update={"grad_norm": None, "kl_ref": None, "ppo_kl": None}) for r in healthy_run(steps=50)]
    run = write_run(tmp_path / "partial", recs).parent
    report = analyze_runs([run])
    r = report.runs[0]
    assert {"grad_norm", "kl_ref", "ppo_kl"} <= set(r.metrics_not_logged) and "entropy" not in r.metrics_not_logged
    missing = plot_run(r, load_run(run).records, report.config.window, tmp_path / "p.png")
    assert {"grad_norm", "kl_ref", "ppo_kl"} <= set(missing) and (tmp_path / "p.png").stat().st_size > 0
    md = write_report(report, tmp_path / "out").read_text()
    assert "Not logged in this run" in md and "`grad_norm`" in md
