"""End to end on CPU: BC + 2 RL steps of SAMPO on a tiny model (offline, < 60 s), resume, the
stability-monitor actions, the JSONL log."""

from __future__ import annotations

import json
import math
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from arlarena_baselines.config import load_config  # noqa: E402
from arlarena_baselines.train import run  # noqa: E402
from arlarena_envs.contract import MetricRecord  # noqa: E402
from arlarena_envs.errors import ConfigError  # noqa: E402

TINY = [
    "model.tiny={hidden_size: 32, num_layers: 1, num_heads: 2, vocab_size: 512, tokenizer_episodes: 4}",
    "env.max_steps=3",
    "rollout.num_groups=2",
    "rollout.group_size=2",
    "bc.episodes=8",
    "bc.epochs=1",
    "bc.batch_size=16",
    "trainer.total_steps=2",
    "trainer.eval_episodes=2",
    "trainer.eval_every=0",
    "trainer.save_every=1",
    "trainer.ppo_mini_batch_size=8",
    "trainer.ppo_micro_batch_size=4",
    "trainer.progress=false",
    "trainer.num_threads=1",
    "algorithm.filter_groups.cold_start_steps=0",
    "algorithm.filter_groups.max_num_gen_batches=2",
    "algorithm.filter_groups.fill_uniform=true",
    "monitor.enable=false",
]


def _records(path):
    return [MetricRecord.model_validate_json(line) for line in path.read_text().splitlines()]


def test_sampo_two_rl_steps_end_to_end(tmp_path):
    cfg = load_config("demo_cpu", TINY)
    assert cfg.algorithm.name == "sampo"
    res = run(cfg, run_dir=tmp_path / "run")
    assert res.steps_done == 2 and res.stopped_reason == "completed"
    assert 0.0 <= res.final_eval_success <= 1.0
    recs = _records(res.metrics_path)
    phases = [r.phase for r in recs]
    assert "bc" in phases and phases.count("rl") == 2 and phases[-1] == "eval"
    rl = [r for r in recs if r.phase == "rl"]
    for r in rl:
        for f in ("success", "score", "grad_norm", "entropy", "kl_ref", "clipfrac_high", "clipfrac_low", "is_ratio_mean",
                  "neg_adv_low_is_frac", "masked_seqs", "valid_format_ratio", "valid_action_ratio", "response_length",
                  "filtered_groups", "kept_groups", "loss", "lr"):
            assert getattr(r, f) is not None, f
        assert r.kept_groups == 2  # filtering refills to the full batch (last try fills with uniform groups)
    # checkpoints, the reference policy and the result file exist
    assert (res.run_dir / "ref_policy" / "config.json").exists()
    assert (res.run_dir / "checkpoints" / "step_000002" / "trainer_state.json").exists()
    assert json.loads((res.run_dir / "result.json").read_text())["steps_done"] == 2


def test_bc_max_updates_stops_mid_epoch(tmp_path):
    """bc.max_updates ends behaviour cloning after that many updates, inside an epoch: the
    last BC record is update 3 although 2 epochs of 8 episodes would take more updates."""
    cfg = load_config("demo_cpu", TINY + ["trainer.total_steps=0", "bc.epochs=2", "bc.batch_size=4", "bc.max_updates=3"])
    res = run(cfg, run_dir=tmp_path / "run")
    bc = [r for r in _records(res.metrics_path) if r.phase == "bc"]
    assert [r.step for r in bc] == [3]


def test_drgrpo_trains_one_step(tmp_path):
    """Dr.GRPO end to end: advantages without std, loss summed over tokens, / max_new_tokens."""
    cfg = load_config("demo_cpu", TINY + ["trainer.total_steps=1", "algorithm.name=drgrpo", "algorithm.adv_estimator=drgrpo",
                                          "algorithm.loss_mode=drgrpo", "algorithm.loss_agg_mode=seq-mean-token-sum",
                                          "algorithm.clip_ratio_low=null", "algorithm.clip_ratio_high=null"])
    assert cfg.algorithm.max_response_len_per_turn == cfg.rollout.sampling.max_new_tokens
    res = run(cfg, run_dir=tmp_path / "run")
    rl = [r for r in _records(res.metrics_path) if r.phase == "rl"]
    assert res.steps_done == 1 and len(rl) == 1 and math.isfinite(rl[0].loss)


def test_resume_continues_from_checkpoint(tmp_path):
    cfg = load_config("demo_cpu", TINY + ["trainer.total_steps=1", "algorithm.name=grpo", "algorithm.adv_estimator=grpo",
                                          "algorithm.loss_mode=vanilla", "algorithm.clip_ratio_low=null", "algorithm.clip_ratio_high=null"])
    run_dir = tmp_path / "run"
    first = run(cfg, run_dir=run_dir)
    assert first.steps_done == 1
    more = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"total_steps": 2})})
    second = run(more, run_dir=run_dir)
    assert second.steps_done == 2
    recs = _records(second.metrics_path)
    assert [r.step for r in recs if r.phase == "rl"] == [1, 2]
    assert sum(r.phase == "bc" for r in recs) >= 1  # BC is not redone, its log is kept


FAKE_MONITOR = textwrap.dedent(
    """
    from dataclasses import dataclass, field

    from arlarena_envs.stability import Alarm, MonitorDecision

    @dataclass
    class MonitorConfig:
        script: dict = field(default_factory=dict)

    class StabilityMonitor:
        def __init__(self, config):
            self.config = config
            self.seen = []
        def update(self, record):
            self.seen.append(record.step)
            act = self.config.script.get(str(record.step), "none")
            alarms = [] if act == "none" else [
                Alarm(kind="kl_drift", step=record.step, severity="warning", message="scripted")]
            return MonitorDecision(step=record.step, action=act, reason=f"scripted {act}", alarms=alarms)
        @property
        def last_healthy_step(self):
            return 1
        def state_dict(self):
            return {"seen": self.seen}
        def load_state_dict(self, state):
            self.seen = list(state["seen"])
    """
)


def test_monitor_actions_tighten_rollback_stop(tmp_path, monkeypatch):
    (tmp_path / "fake_monitor_mod.py").write_text(FAKE_MONITOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fake_monitor_mod", None)
    cfg = load_config("demo_cpu", TINY + [
        "trainer.total_steps=4", "monitor.enable=true", "monitor.module=fake_monitor_mod",
        "monitor.config={script: {'2': tighten, '3': rollback, '4': stop}}", "algorithm.filter_groups.enable=false",
    ])
    res = run(cfg, run_dir=tmp_path / "run")
    assert [a["action"] for a in res.monitor_actions] == ["tighten", "rollback", "stop"]
    assert res.stopped_reason.startswith("monitor stop at step 4")
    rl = {r.step: r for r in _records(res.metrics_path) if r.phase == "rl"}
    assert rl[2].monitor_action == "tighten" and rl[2].clip_scale == 0.5
    assert rl[2].lr == pytest.approx(cfg.trainer.lr)  # the record shows the lr used in that step
    assert rl[3].lr == pytest.approx(cfg.trainer.lr * 0.5)
    assert rl[3].rollback_to == 1  # newest checkpoint at or before last_healthy_step
    assert rl[4].monitor_action == "stop"


def test_missing_monitor_module_is_a_config_error():
    from arlarena_baselines.monitoring import make_monitor

    with pytest.raises(ConfigError, match="no_such_module_xyz"):
        make_monitor("no_such_module_xyz", {})
    with pytest.raises(ConfigError, match="MonitorConfig"):
        make_monitor("arlarena_envs.stability.monitor", {"no_such_option": 1})


def test_monitor_disabled_trains_without_one(tmp_path):
    cfg = load_config("demo_cpu", TINY + ["trainer.total_steps=1", "bc.enable=false", "monitor.enable=false"])
    res = run(cfg, run_dir=tmp_path / "run")
    assert res.monitor_actions == [] and not (res.run_dir / "monitor.jsonl").exists()


def test_real_monitor_integration_smoke():
    from arlarena_baselines.monitoring import judge, make_monitor
    from arlarena_envs.stability import MonitorDecision

    m = make_monitor("arlarena_envs.stability.monitor", {"actions": {"grad_norm_nonfinite": "stop"}})
    d = judge(m, MetricRecord(step=1, grad_norm=1.0, success=0.5))
    assert isinstance(d, MonitorDecision) and d.action == "none"
    d = judge(m, MetricRecord(step=2, grad_norm=float("nan"), success=0.5))
    assert d.action == "stop" and d.alarms and d.alarms[0].kind == "grad_norm_nonfinite"


def test_non_finite_gradient_skips_the_update(tmp_path, monkeypatch):
    from arlarena_baselines import losses as loss_lib

    real = loss_lib.get_policy_loss_fn("gspo")

    def nan_loss(*args, **kwargs):
        out = real(*args, **kwargs)
        out.pg_loss = out.pg_loss * float("nan")
        return out

    monkeypatch.setattr(loss_lib, "get_policy_loss_fn", lambda name: nan_loss)
    cfg = load_config("demo_cpu", TINY + ["trainer.total_steps=1", "bc.enable=false"])
    res = run(cfg, run_dir=tmp_path / "run")
    rl = [r for r in _records(res.metrics_path) if r.phase == "rl"]
    assert rl[0].skipped_update is True
    assert not math.isfinite(rl[0].grad_norm)
    import torch as _t
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(res.run_dir / "checkpoints" / "step_000000")
    after = AutoModelForCausalLM.from_pretrained(res.run_dir / "checkpoints" / "step_000001")
    for (n, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items()):
        assert _t.equal(a, b), n
