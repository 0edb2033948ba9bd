"""Golden-tensor tests of the advantage estimators (hand-computed small cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arlarena_baselines import advantages as A


def rows(scores, T=2, mask=None):
    """token_level_rewards with each row's score at its last valid token."""
    B = len(scores)
    m = torch.ones(B, T) if mask is None else torch.tensor(mask, dtype=torch.float32)
    r = torch.zeros(B, T)
    for i, s in enumerate(scores):
        n = int(m[i].sum())
        r[i, max(n - 1, 0)] = s
    return r, m


# ------------------------------------------------------------------ GRPO


def test_grpo_cross_steps_two_groups():
    # group a: rows 1, 2, 3 (traj x has 2 steps, counts twice); group b: 4, 6
    r, m = rows([1.0, 2.0, 3.0, 4.0, 6.0])
    out = A.compute_grpo_outcome_advantage(r, m, ["a", "a", "a", "b", "b"], ["x", "x", "y", "z", "w"])
    mean_a, std_a = 2.0, 1.0
    mean_b, std_b = 5.0, math.sqrt(2.0)
    exp = [(1 - mean_a) / (std_a + 1e-6), 0.0, (3 - mean_a) / (std_a + 1e-6), (4 - mean_b) / (std_b + 1e-6), (6 - mean_b) / (std_b + 1e-6)]
    assert out[:, 0].tolist() == pytest.approx(exp, rel=1e-6)
    assert torch.equal(out[:, 0], out[:, 1])


def test_grpo_two_element_group_is_0707():
    r, m = rows([0.0, 10.0])
    out = A.compute_grpo_outcome_advantage(r, m, [0, 0])
    assert out[:, 0].tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)], rel=1e-5)


def test_grpo_singleton_group_keeps_score():
    r, m = rows([5.0])
    out = A.compute_grpo_outcome_advantage(r, m, ["solo"])
    denom = torch.tensor(1.0) + 1e-6  # float32: 1.0000009536743164
    assert out[0, 0].item() == (torch.tensor(5.0) / denom).item()  # computed in float32
    assert denom.item() == 1.0000009536743164


def test_grpo_all_equal_rewards_give_zero():
    r, m = rows([3.0, 3.0, 3.0])
    out = A.compute_grpo_outcome_advantage(r, m, [1, 1, 1])
    assert torch.count_nonzero(out) == 0


def test_grpo_masks_do_not_touch_statistics():
    # row 1 has an empty mask: it still enters the stats (its reward sits at a masked position)
    r = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
    m = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    out = A.compute_grpo_outcome_advantage(r, m, [0, 0])
    assert out[0].tolist() == pytest.approx([-1 / math.sqrt(2)] * 2, rel=1e-5)
    assert out[1].tolist() == [0.0, 0.0]


def test_drgrpo_no_std():
    r, m = rows([1.0, 2.0, 6.0])
    out = A.compute_drgrpo_outcome_advantage(r, m, [0, 0, 0])
    assert out[:, 0].tolist() == pytest.approx([-2.0, -1.0, 3.0])


def test_vanilla_grpo_per_trajectory_mean_vs_first():
    # group 0: traj x rows (1, 3) -> mean 2 / first 1; traj y row 5
    r, m = rows([1.0, 3.0, 5.0])
    idx, traj = [0, 0, 0], ["x", "x", "y"]
    mean_style = A.compute_grpo_outcome_advantage(r, m, idx, traj, compute_mean_std_cross_steps=False)
    # sample {2, 5}: mean 3.5, std 3/sqrt2
    std = 3 / math.sqrt(2)
    assert mean_style[:, 0].tolist() == pytest.approx([(1 - 3.5) / std, (3 - 3.5) / std, (5 - 3.5) / std], rel=1e-5)
    first_style = A.compute_grpo_outcome_advantage(r, m, idx, traj, compute_mean_std_cross_steps=False, per_traj_statistic="first")
    # sample {1, 5}: mean 3, std 4/sqrt2; every row still gets an advantage
    std = 4 / math.sqrt(2)
    assert first_style[:, 0].tolist() == pytest.approx([(1 - 3) / std, 0.0, (5 - 3) / std], rel=1e-5)


def test_grpo_cross_steps_false_needs_traj_index():
    r, m = rows([1.0])
    with pytest.raises(ValueError):
        A.compute_grpo_outcome_advantage(r, m, [0], compute_mean_std_cross_steps=False)


# ------------------------------------------------------------------ GiGPO


def test_step_discounted_returns_interleaved():
    # rows step-major interleaved: a0 b0 a1 b1 a2; rewards
    rew = [0.0, 1.0, 0.0, 2.0, 10.0]
    traj = ["a", "b", "a", "b", "a"]
    out = A.compute_step_discounted_returns(rew, traj, gamma=0.95)
    g = np.float32(0.95)
    a2 = np.float32(10.0)
    a1 = np.float32(0.0) + g * a2
    a0 = np.float32(0.0) + g * a1
    b1 = np.float32(2.0)
    b0 = np.float32(1.0) + g * b1
    assert out.dtype == torch.float32
    assert out.tolist() == [float(a0), float(b0), float(a1), float(b1), float(a2)]


def test_build_step_group_exact_within_index_only():
    anchors = ["s0", "s0", "s1", "s0", "s0"]
    index = ["g1", "g1", "g1", "g2", "g2"]
    lab = A.build_step_group(anchors, index)
    assert lab[0] == lab[1] != lab[2]
    assert lab[3] == lab[4] and lab[3] != lab[0]  # same anchor, other task group -> other step group


def test_build_step_group_hashable_anchors():
    anchors = [np.array([[1, 2], [3, 4]]), [1, [2, 3]], {"b": 1, "a": 2}, (1, (2, 3)), {"a": 2, "b": 1}, np.array([1, 2, 3, 4])]
    lab = A.build_step_group(anchors, [0] * 6)
    assert lab[1] == lab[3]  # list and tuple -> same tuple
    assert lab[2] == lab[4]  # dict order does not matter
    assert lab[0] == lab[5]  # ndarray -> tuple(flatten)


def test_build_step_group_similarity_first_member():
    a = "abcdefghij"
    b = "abcdefghiX"  # ratio 0.9 with a
    c = "abcdefghXY"  # ratio 0.8 with a, 0.9 with b
    lab = A.build_step_group([a, b, c], [0, 0, 0], enable_similarity=True, similarity_thresh=0.85)
    assert lab[0] == lab[1]
    assert lab[2] != lab[0]  # compared with the cluster's FIRST member only
    with pytest.raises(ValueError):
        A.build_step_group([a], [0], enable_similarity=True, similarity_thresh=1.0)


def test_gigpo_mean_norm_components():
    # group g: traj x = 2 steps (episode reward 10), traj y = 2 steps (episode reward 0)
    # anchors: step 0 shared (s0), x step 1 at s1, y step 1 at s2 (singleton step groups)
    r, m = rows([10.0, 10.0, 0.0, 0.0])
    step_r = torch.tensor([9.5, 10.0, 0.0, 0.0])
    comp = A.gigpo_advantage_components(r, step_r, m, ["s0", "s1", "s0", "s2"], ["g"] * 4, ["x", "x", "y", "y"], mode="mean_norm")
    assert comp["episode_advantages_component"][:, 0].tolist() == pytest.approx([5.0, 5.0, -5.0, -5.0])
    # s0 group {9.5, 0}: mean 4.75 -> ±4.75; singletons -> 0
    assert comp["step_advantages_component"][:, 0].tolist() == pytest.approx([4.75, 0.0, -4.75, 0.0])
    assert comp["advantages"][:, 0].tolist() == pytest.approx([9.75, 5.0, -9.75, -5.0])


def test_gigpo_mean_std_norm_and_weight():
    r, m = rows([10.0, 10.0, 0.0, 0.0])
    step_r = torch.tensor([9.5, 10.0, 0.0, 0.0])
    out = A.compute_gigpo_outcome_advantage(r, step_r, m, ["s0", "s1", "s0", "s2"], ["g"] * 4, ["x", "x", "y", "y"],
                                            step_advantage_w=0.5, mode="mean_std_norm")
    std_ep = float(torch.std(torch.tensor([10.0, 10.0, 0.0, 0.0])))
    ep = 5.0 / (std_ep + 1e-6)
    std_st = float(torch.std(torch.tensor([9.5, 0.0])))
    st = 4.75 / (std_st + 1e-6)
    assert out[:, 0].tolist() == pytest.approx([ep + 0.5 * st, ep, -ep - 0.5 * st, -ep], rel=1e-5)


def test_gigpo_singleton_episode_group_keeps_score_step_zero():
    r, m = rows([7.0])
    out_mn = A.compute_gigpo_outcome_advantage(r, torch.tensor([3.0]), m, ["s"], [0], ["t"], mode="mean_norm")
    assert out_mn[0, 0].item() == pytest.approx(7.0)  # episode keeps s, step singleton gives 0
    out_ms = A.compute_gigpo_outcome_advantage(r, torch.tensor([3.0]), m, ["s"], [0], ["t"], mode="mean_std_norm")
    assert out_ms[0, 0].item() == pytest.approx(7.0 / 1.0000009536743164, rel=1e-7)


def test_gigpo_all_equal_rewards_zero():
    r, m = rows([1.0, 1.0, 1.0])
    out = A.compute_gigpo_outcome_advantage(r, torch.tensor([2.0, 2.0, 2.0]), m, ["a", "a", "a"], [0] * 3, [0, 1, 2])
    assert torch.count_nonzero(out) == 0


def test_gigpo_mask_applied():
    r, m = rows([1.0, 0.0], T=3, mask=[[1, 1, 0], [1, 0, 0]])
    out = A.compute_gigpo_outcome_advantage(r, torch.tensor([1.0, 0.0]), m, ["a", "a"], [0, 0], [0, 1])
    assert out.flatten().tolist() == pytest.approx([1.0, 1.0, 0.0, -1.0, 0.0, 0.0])


def test_gigpo_bad_mode():
    r, m = rows([1.0])
    with pytest.raises(ValueError):
        A.compute_gigpo_outcome_advantage(r, torch.tensor([1.0]), m, ["a"], [0], [0], mode="std")


# ------------------------------------------------------------------ EMPG


def test_empg_hand_computed():
    # two rows of one trajectory (turn 0 and 1), advantages 1 and -1, entropies 0 and 1
    adv = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    ent = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    m = torch.ones(2, 2)
    out = A.compute_empg_advantage(adv, ent, m, [0, 1], ["t", "t"])
    hn = torch.tensor([0.0, 1.0 / (1.0 + 1e-8)])
    g = torch.exp(-hn)
    g = g / (g.mean() + 1e-8)
    f = torch.exp(-hn)
    a0 = 1.0 * g[0] + 0.05 * f[1]
    a1 = -1.0 * g[1]
    mean_first = (a0 + a1) / 2
    assert out[:, 0].tolist() == pytest.approx([float(a0 - mean_first), float(a1 - mean_first)], rel=1e-6)
    assert torch.equal(out[:, 0], out[:, 1])


def test_empg_single_row_and_mask():
    adv = torch.tensor([[2.0, 2.0]])
    out = A.compute_empg_advantage(adv, torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), [0], [0])
    # single row: g = 1/(1+1e-8), minus its own first-token value -> 0 everywhere
    assert out.flatten().tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_empg_missing_next_turn_raises():
    adv = torch.zeros(2, 1)
    with pytest.raises(KeyError):
        A.compute_empg_advantage(adv, torch.tensor([[0.1], [0.2]]), torch.ones(2, 1), [0, 2], ["t", "t"])
    with pytest.raises(ValueError):
        A.compute_empg_advantage(adv, torch.tensor([[0.1], [0.2]]), torch.ones(2, 1), [0, 2], ["t", "t"])
