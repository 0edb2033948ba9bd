"""The online stability monitor on synthetic logs with known collapses (and healthy runs)."""

from __future__ import annotations

import json
import math

import pytest

from arlarena_envs.contract import MetricRecord
from arlarena_envs.errors import ConfigError
from arlarena_envs.stability.monitor import MonitorConfig, MonitorDecision, StabilityMonitor
from arlarena_envs.stability.synthetic import cispo_collapse_run, entropy_collapse_run, healthy_run


def _feed(records, config=None, log_path=None):
    m = StabilityMonitor(config, log_path=log_path)
    return m, [m.update(r) for r in records]


def _first(decisions, kind):
    for d in decisions:
        for a in d.alarms:
            if a.kind == kind:
                return d.step, a
    return None, None


@pytest.mark.parametrize("seed", range(12))
def test_healthy_noisy_runs_never_alarm(seed):
    m, ds = _feed(healthy_run(seed=seed), MonitorConfig(actions={"collapse": "stop", "grad_norm_spike": "tighten"}))
    assert [a.kind for d in ds for a in d.alarms] == []
    assert all(d.action == "none" and d.healthy for d in ds)
    assert m.last_healthy_step == 200


def test_cispo_like_collapse_is_detected_near_the_known_step():
    m, ds = _feed(cispo_collapse_run(collapse_step=130), MonitorConfig(actions={"collapse": "rollback"}))
    step, collapse = _first(ds, "collapse")
    assert collapse is not None and collapse.severity == "critical"
    assert 130 <= collapse.onset_step <= 142 and step <= 145
    for kind in ("success_drop", "grad_norm_spike", "valid_format_drop"):
        s, _ = _first(ds, kind)
        assert s is not None and 130 <= s <= 145, kind
    # nothing before the collapse
    assert all(not d.alarms for d in ds if d.step < 130)
    first_action = next(d for d in ds if d.action != "none")
    assert first_action.action == "rollback" and first_action.step == step
    assert first_action.last_healthy_step is not None and 120 <= first_action.last_healthy_step < collapse.onset_step
    assert "roll back" in first_action.reason
    # the healthy step never moves past the collapse while it lasts
    assert m.last_healthy_step == first_action.last_healthy_step


def test_entropy_collapse_is_detected_and_healthy_entropy_decay_is_not():
    _, ds = _feed(entropy_collapse_run(collapse_step=80))
    step, a = _first(ds, "entropy_collapse")
    assert a is not None and 85 <= a.onset_step <= 105 and step <= 108
    assert all(not d.alarms for d in ds if d.step < 85)
    assert _first(ds, "collapse")[1] is None  # no success collapse in this run


def test_default_is_alarms_only():
    _, ds = _feed(cispo_collapse_run())
    assert any(d.alarms for d in ds)
    assert {d.action for d in ds} == {"none"}


def test_actions_precedence_cooldown_and_tighten_scales():
    cfg = MonitorConfig(actions={"grad_norm_spike": "tighten", "collapse": "stop"}, action_cooldown=3, clip_scale=0.25)
    _, ds = _feed(cispo_collapse_run(), cfg)
    acted = [d for d in ds if d.action != "none"]
    assert acted[0].action == "tighten" and acted[0].clip_scale == 0.25 and acted[0].lr_scale == 0.5
    assert all(b.step - a.step > 3 for a, b in zip(acted, acted[1:]))
    assert "stop" in {d.action for d in acted}
    suppressed = [d for d in ds if d.action == "none" and "cooldown" in d.reason]
    assert suppressed


def test_rollback_without_healthy_step_becomes_stop():
    m = StabilityMonitor(MonitorConfig(actions={"grad_norm_nonfinite": "rollback"}))
    d = m.update(MetricRecord(step=1, grad_norm=math.inf))
    assert d.action == "stop" and "no step was healthy" in d.reason
    assert m.last_healthy_step is None and not d.healthy


def test_missing_values_are_not_zero():
    m = StabilityMonitor()
    for s in range(1, 30):
        d = m.update(MetricRecord(step=s, success=0.8 if s < 10 else None))
        assert d.alarms == []
    assert m.last_healthy_step == 29


def test_decisions_are_json_and_logged(tmp_path):
    log = tmp_path / "monitor.jsonl"
    _, ds = _feed(cispo_collapse_run(), MonitorConfig(actions={"collapse": "rollback"}), log_path=log)
    for d in ds:
        again = MonitorDecision.model_validate_json(d.model_dump_json())
        assert again == d
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == sum(1 for d in ds if d.alarms or d.action != "none")
    assert any(x["action"] == "rollback" for x in lines)


def test_rewind_after_rollback_forgets_later_steps():
    recs = cispo_collapse_run()
    m, ds = _feed(recs, MonitorConfig(actions={"collapse": "rollback"}))
    back = m.last_healthy_step
    # the trainer reloads the checkpoint at `back` and resumes with healthy rows
    d = m.update(recs[back - 15].model_copy(update={"step": back + 1}))
    assert d.alarms == [] and m.last_healthy_step == back + 1
    assert max(x.step for x in m.decisions) == back + 1


def test_eval_rows_drive_success_when_selected():
    cfg = MonitorConfig(success_field="eval_success", window=1, sustain=2)
    m = StabilityMonitor(cfg)
    vals = [0.2, 0.5, 0.8, 0.8, 0.3, 0.2, 0.1]
    out = []
    for i, v in enumerate(vals, start=1):
        m.update(MetricRecord(step=i, success=0.5))
        out.append(m.update(MetricRecord(step=i, phase="eval", eval_success=v)))
    kinds = [[a.kind for a in d.alarms] for d in out]
    assert kinds[5] == ["success_drop"] and out[5].alarms[0].onset_step == 5
    assert m.last_healthy_step == 4


def test_config_validation():
    with pytest.raises(ValueError):
        MonitorConfig(actions={"not_a_kind": "stop"})
    with pytest.raises(ValueError):
        MonitorConfig(actions={"collapse": "explode"})
    with pytest.raises(ConfigError):
        StabilityMonitor({"window": 3})  # type: ignore[arg-type]


def test_state_dict_round_trip():
    recs = cispo_collapse_run()
    m, _ = _feed(recs[:140])
    m2 = StabilityMonitor()
    m2.load_state_dict(json.loads(json.dumps(m.state_dict())))
    assert m2.last_healthy_step == m.last_healthy_step
    assert m2.update(recs[140]) == m.update(recs[140])


def test_auto_success_field_prefers_rollout_success_over_a_baseline_eval():
    m = StabilityMonitor()
    m.update(MetricRecord(step=0, phase="eval", eval_success=0.0))
    m.update(MetricRecord(step=1, success=0.5))
    assert m.success_field_used == "success"
    m2 = StabilityMonitor(MonitorConfig(window=2))
    m2.update(MetricRecord(step=0, phase="eval", eval_success=0.6))
    m2.update(MetricRecord(step=1, grad_norm=0.3))
    assert m2.success_field_used == "eval_success"
    d = m2.update(MetricRecord(step=1, phase="eval", eval_success=0.8))
    assert d.signals["success_smoothed"] == pytest.approx(0.7)  # the step-0 eval counts


def _low_peak_run(degenerate_from: int | None, success_after: float, steps: int = 30, seed: int = 0):
    """Success ~0.04 (below min_peak_success), valid-format ~0.95; from `degenerate_from` on the
    format ratio falls to ~0.3 and success to `success_after` (the lr-too-high runs of the
    comparison in miniature: 4 % -> 0 % while the outputs stop parsing)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for step in range(1, steps + 1):
        bad = degenerate_from is not None and step >= degenerate_from
        succ = success_after if bad else float(np.clip(0.04 + rng.normal(0, 0.02), 0, 1))
        fmt = 0.3 + rng.normal(0, 0.02) if bad else 0.95 + rng.normal(0, 0.01)
        out.append(MetricRecord(step=step, success=succ, valid_format_ratio=float(fmt), grad_norm=0.3, entropy=0.8))
    return out


def test_a_degenerating_policy_collapses_from_a_low_peak():
    _, ds = _feed(_low_peak_run(degenerate_from=15, success_after=0.0))
    assert _first(ds, "success_drop")[1] is None  # the peak (~0.04) is below min_peak_success
    step, a = _first(ds, "collapse")
    assert a is not None and a.rule == "degeneration" and a.severity == "critical"
    assert 15 <= a.onset_step <= 18 and step <= 22
    assert "valid_format_drop" in a.message


def test_format_drop_with_kept_success_or_a_flat_low_run_is_no_collapse():
    # the format falls but success holds its (low) level: not a collapse of what was achieved
    _, ds = _feed(_low_peak_run(degenerate_from=15, success_after=0.05))
    assert _first(ds, "valid_format_drop")[1] is not None and _first(ds, "collapse")[1] is None
    # a flat low-success run whose outputs stay valid: nothing
    _, ds = _feed(_low_peak_run(degenerate_from=None, success_after=0.0))
    assert [a.kind for d in ds for a in d.alarms] == []


def test_corroborated_collapse_carries_its_rule():
    _, ds = _feed(cispo_collapse_run(collapse_step=130))
    assert _first(ds, "collapse")[1].rule == "corroborated"
