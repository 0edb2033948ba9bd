"""Dynamic filtering (ARL-Arena semantics) and config validation."""

from __future__ import annotations

import pytest

from arlarena_baselines.config import load_config, preset_names
from arlarena_baselines.filtering import filter_active, is_uniform, select_groups
from arlarena_envs.errors import ConfigError


def test_uniform_is_exact_equality():
    assert is_uniform([0.0, 0.0, 0.0])
    assert not is_uniform([0.0, 0.0, 1e-12])


def test_cold_start_gate():
    assert not filter_active(step=15, enable=True, cold_start_steps=15)
    assert filter_active(step=16, enable=True, cold_start_steps=15)
    assert not filter_active(step=100, enable=False, cold_start_steps=0)
    assert not filter_active(step=100, enable=True, cold_start_steps=0, is_train=False)


def test_regular_try_keeps_informative_only_and_truncates():
    groups = [[0, 0], [0, 10], [10, 10], [0, 10], [5, 0]]
    assert select_groups(groups, needed_groups=4, last_try=False) == [1, 3, 4]
    assert select_groups(groups, needed_groups=2, last_try=False) == [1, 3]  # whole groups, in order


def test_last_try_fills_with_uniform_groups_in_order():
    groups = [[0, 0], [0, 10], [10, 10], [1, 1]]
    assert select_groups(groups, needed_groups=3, last_try=True) == [1, 0, 2]
    assert select_groups(groups, needed_groups=1, last_try=True) == [1]
    assert select_groups(groups, needed_groups=0, last_try=True) == []


def test_last_try_without_uniform_fill_keeps_informative_groups_only():
    groups = [[0, 0], [0, 10], [10, 10], [1, 1]]
    assert select_groups(groups, needed_groups=3, last_try=True, fill_uniform=False) == [1]
    # earlier tries kept something: an all-uniform last try adds nothing
    assert select_groups([[0, 0], [1, 1]], needed_groups=3, last_try=True, fill_uniform=False, have_groups=2) == []
    # nothing kept at all: fill as ARL-Arena, so the step still has rows
    assert select_groups([[0, 0], [1, 1]], needed_groups=1, last_try=True, fill_uniform=False, have_groups=0) == [0]


def test_all_presets_validate():
    names = preset_names()
    for want in ("sampo", "grpo", "drgrpo", "grpo_st", "gspo", "cispo", "sapo", "gigpo", "empg", "dapo", "demo_cpu"):
        assert want in names
    sampo = load_config("sampo")
    a = sampo.algorithm
    assert (a.loss_mode, a.adv_estimator, a.loss_agg_mode) == ("gspo", "gigpo", "seq-mean-token-mean")
    assert (a.clip_ratio_low, a.clip_ratio_high, a.kl_loss_coef, a.gamma) == (3e-3, 4e-3, 0.01, 0.95)
    assert a.filter_groups.enable and a.filter_groups.max_num_gen_batches == 3
    assert load_config("cispo").algorithm.clip_ratio_low == 1.0
    assert load_config("grpo_st").algorithm.loss_agg_mode == "seq-mean-token-mean"


@pytest.mark.parametrize(
    "overrides,msg",
    [
        (["algorithm.loss_mode=gspo", "algorithm.use_seq_mask=true"], "use_seq_mask"),
        (["algorithm.loss_mode=drgrpo", "algorithm.adv_estimator=grpo"], "drgrpo"),
        (["rollout.group_size=1"], "group_size"),
        (["algorithm.clip_ratio_c=1.0"], "clip_ratio_c"),
        (["model.tiny={hidden_size: 64}"], "exactly one"),
        (["algorithm.loss_agg_mode=token-sum"], "loss_agg_mode"),
        (["trainer.ppo_micro_batch_size=512"], "micro"),
        (["algorithm.bogus=1"], "bogus"),
    ],
)
def test_bad_combinations_rejected(overrides, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config("sampo", overrides)


def test_drgrpo_gets_the_reference_trainers_aggregation_and_divisor():
    """The reference trainer's drgrpo: loss_agg_mode seq-mean-token-sum, and the loss divided by
    the longest response (data.max_response_length; here rollout.sampling.max_new_tokens)."""
    cfg = load_config("drgrpo", ["rollout.sampling.max_new_tokens=48"])
    assert (cfg.algorithm.loss_agg_mode, cfg.algorithm.max_response_len_per_turn) == ("seq-mean-token-sum", 48)
    assert load_config("drgrpo", ["algorithm.max_response_len_per_turn=500"]).algorithm.max_response_len_per_turn == 500  # set: kept
    with pytest.raises(ConfigError, match="seq-mean-token-sum"):
        load_config("drgrpo", ["algorithm.loss_agg_mode=token-mean"])
    # a saved config (every field set) loads back to the same settings
    again = load_config("drgrpo").model_dump()
    from arlarena_baselines.config import validate_config

    assert validate_config(again).model_dump() == again


def test_unknown_config_path():
    with pytest.raises(ConfigError, match="presets"):
        load_config("no_such_preset")
