"""Golden-tensor tests of the policy losses, aggregation, sequence mask and KL (hand-computed)."""

from __future__ import annotations

import math

import pytest
import torch

from arlarena_baselines import losses as L

F = torch.float64


def t(x):
    return torch.tensor(x, dtype=F)


# ------------------------------------------------------------------ agg_loss


LOSS = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = t([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("token-mean", (1 + 2 + 4) / 3),
        ("seq-mean-token-mean", ((1 + 2) / 2 + 4 / 1) / 2),
        ("seq-mean-token-sum", ((1 + 2) + 4) / 2),
        ("seq-mean-token-sum-norm", (1 + 2 + 4) / 3),  # divided by T = 3 columns
    ],
)
def test_agg_modes(mode, expected):
    assert L.agg_loss(LOSS, MASK, mode).item() == pytest.approx(expected, abs=1e-7)


def test_agg_token_mean_eps_and_empty():
    # Σ/(Σm + 1e-8): an all-empty mask gives exactly 0
    assert L.agg_loss(LOSS, torch.zeros_like(MASK), "token-mean").item() == 0.0
    assert L.agg_loss(LOSS, MASK, "token-mean").item() == pytest.approx(7 / (3 + 1e-8), rel=1e-12)


def test_agg_empty_rows():
    mask = t([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    # seq-mean-token-mean (ARL-Arena): empty rows dropped
    assert L.agg_loss(LOSS, mask, "seq-mean-token-mean").item() == pytest.approx(1.5)
    # seq-mean-token-sum: empty rows count as 0 in the mean over all B rows
    assert L.agg_loss(LOSS, mask, "seq-mean-token-sum").item() == pytest.approx(1.5)
    # all rows empty -> 0.0 (not NaN)
    assert L.agg_loss(LOSS, torch.zeros_like(mask), "seq-mean-token-mean").item() == 0.0


def test_agg_masked_nan_does_not_leak():
    loss = t([[1.0, float("nan")], [float("inf"), 2.0]])
    mask = t([[1.0, 0.0], [0.0, 1.0]])
    for mode in L.LOSS_AGG_MODES:
        assert math.isfinite(L.agg_loss(loss, mask, mode).item()), mode


def test_agg_unknown_mode():
    with pytest.raises(ValueError):
        L.agg_loss(LOSS, MASK, "token-sum")


# ------------------------------------------------------------------ vanilla PPO


def test_vanilla_clip_dual_clip_values_and_fracs():
    # token 0: A=+1, r=1.5 -> clipped at 1.2 -> L=-1.2 (clipfrac)
    # token 1: A=-1, r=0.5 -> L1=0.5, L2=0.8 -> 0.8 (clipfrac), C1=0.8 < L3=3 -> 0.8
    # token 2: A=-1, r=5   -> L1=5, L2=1.2, C1=5 > 3 -> dual clip 3 (clipfrac_lower)
    # token 3: A=+2, r=1.1 -> unclipped -2.2
    logp = t([[math.log(1.5), math.log(0.5), math.log(5.0), math.log(1.1)]])
    old = torch.zeros_like(logp)
    adv = t([[1.0, -1.0, -1.0, 2.0]])
    mask = torch.ones_like(logp)
    out = L.compute_policy_loss_vanilla(old, logp, adv, mask, "token-mean", clip_ratio=0.2)
    assert out.pg_loss.item() == pytest.approx((-1.2 + 0.8 + 3.0 - 2.2) / 4)
    assert out.pg_clipfrac.item() == pytest.approx(2 / 4)
    assert out.pg_clipfrac_lower.item() == pytest.approx(1 / 4)
    assert out.ppo_kl.item() == pytest.approx(-(math.log(1.5) + math.log(0.5) + math.log(5.0) + math.log(1.1)) / 4)


def test_vanilla_clip_higher():
    logp = t([[math.log(1.25)]])
    out = L.compute_policy_loss_vanilla(torch.zeros_like(logp), logp, t([[1.0]]), torch.ones_like(logp),
                                        clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.28)
    assert out.pg_loss.item() == pytest.approx(-1.25)  # 1.25 < 1.28: unclipped
    out = L.compute_policy_loss_vanilla(torch.zeros_like(logp), logp, t([[1.0]]), torch.ones_like(logp), clip_ratio=0.2)
    assert out.pg_loss.item() == pytest.approx(-1.2)


def test_vanilla_gradients_where_bounds_bind():
    logp = t([[math.log(0.5), math.log(5.0), math.log(1.0)]]).requires_grad_(True)
    adv = t([[-1.0, -1.0, -1.0]])
    out = L.compute_policy_loss_vanilla(torch.zeros_like(logp), logp, adv, torch.ones_like(logp), "seq-mean-token-sum")
    out.pg_loss.backward()
    # r < 1-eps with A<0: zero gradient; r > c with A<0: zero gradient; r = 1: d(-A r)/dlogp = 1
    assert logp.grad.flatten().tolist() == pytest.approx([0.0, 0.0, 1.0])


def test_vanilla_delta_clamp_20():
    logp = t([[100.0]])
    out = L.compute_policy_loss_vanilla(torch.zeros_like(logp), logp, t([[1.0]]), torch.ones_like(logp))
    assert out.ppo_kl.item() == pytest.approx(-20.0)
    assert math.isfinite(out.pg_loss.item())


def test_vanilla_clip_ratio_c_must_exceed_one():
    x = t([[0.0]])
    with pytest.raises(ValueError):
        L.compute_policy_loss_vanilla(x, x, x, torch.ones_like(x), clip_ratio_c=1.0)


def test_vanilla_tis():
    logp = t([[0.0]])
    rollout = t([[-math.log(3.0)]])  # exp(old - rollout) = 3 -> capped at 2
    out = L.compute_policy_loss_vanilla(logp, logp, t([[1.0]]), torch.ones_like(logp), rollout_log_probs=rollout, tis_imp_ratio_cap=2.0)
    assert out.pg_loss.item() == pytest.approx(-2.0)


# ------------------------------------------------------------------ sequence mask


def test_seq_mask_rule_and_effect():
    # row 0: A<0, mean(old - new) = 0.3 > 0.223 -> masked; row 1: A>0 -> kept; row 2: A<0 but 0.1 <= δ -> kept
    logp = t([[-0.3, -0.3], [-0.3, -0.3], [-0.1, -0.1]])
    old = torch.zeros_like(logp)
    adv = t([[-1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])
    mask = torch.ones_like(logp)
    eff, n = L.apply_seq_mask(adv, logp, old, mask, 0.223)
    assert n.item() == 1
    assert eff.tolist() == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
    out = L.compute_policy_loss_vanilla(old, logp, adv, mask, "token-mean", use_seq_mask=True, seq_mask_delta=0.223)
    assert out.num_masked_seqs.item() == 1
    r1, r2 = math.exp(-0.3), math.exp(-0.1)
    # row 1: A=+1, r=0.741 (inside lower clip for A>0 -> -A r); row 2: A=-1, r=0.905 -> L1 = 0.905
    assert out.pg_loss.item() == pytest.approx((2 * -r1 + 2 * r2) / 4)
    # ppo_kl over the effective mask only
    assert out.ppo_kl.item() == pytest.approx((0.3 * 2 + 0.1 * 2) / 4)


@pytest.mark.parametrize("delta,masked", [(0.223, 0), (0.05, 0), (0.04, 1), (-0.1, 2)])
def test_seq_mask_deltas(delta, masked):
    logp = t([[-0.1, 0.0], [0.05, 0.0]])  # mean(old-new): 0.05, -0.025
    adv = t([[-1.0, -1.0], [-2.0, -2.0]])
    mask = t([[1.0, 1.0], [1.0, 0.0]])  # row 1 length 1: mean(old-new) = -0.05
    _, n = L.apply_seq_mask(adv, logp, torch.zeros_like(logp), mask, delta)
    assert n.item() == masked  # strict ">": mean log-ratio 0.05 is not masked at δ = 0.05


# ------------------------------------------------------------------ GSPO


def test_gspo_value_clip_and_aggregation():
    # row 0: Δ = [0.1, 0.3] -> Δ̄ = 0.2, s = e^0.2 = 1.2214 > 1.2 -> clipped for A>0: L = -1.2 per token
    # row 1: one valid token, Δ = -0.1 -> s = 0.9048; A=-1 -> L1 = 0.9048, L2 = 0.9048 (inside) -> 0.9048
    logp = t([[0.1, 0.3], [-0.1, 7.0]])
    old = torch.zeros_like(logp)
    adv = t([[1.0, 1.0], [-1.0, -1.0]])
    mask = t([[1.0, 1.0], [1.0, 0.0]])
    out = L.compute_policy_loss_gspo(old, logp, adv, mask, "token-mean", clip_ratio=0.2)
    assert out.pg_loss.item() == pytest.approx((-1.2 + math.exp(-0.1)) / 2)  # seq-mean-token-mean always
    assert out.pg_clipfrac.item() == pytest.approx(2 / 3)
    assert out.pg_clipfrac_lower.item() == 0.0
    assert out.ppo_kl.item() == pytest.approx(-(0.1 + 0.3 - 0.1) / 3)


def test_gspo_gradient_token_varying_advantages():
    # unclipped: grad[i,t] = -A[i,t] * s_i / len_i / n_rows, through the token's own log-prob only
    logp = t([[0.01, -0.01, 0.0]]).requires_grad_(True)
    adv = t([[1.0, 2.0, -1.0]])
    mask = torch.ones_like(logp)
    out = L.compute_policy_loss_gspo(torch.zeros_like(logp), logp, adv, mask, clip_ratio=0.2)
    out.pg_loss.backward()
    s = math.exp(0.0)
    assert logp.grad.flatten().tolist() == pytest.approx([-1.0 * s / 3, -2.0 * s / 3, 1.0 * s / 3])


def test_gspo_log_ratio_clamped_at_10():
    logp = t([[50.0]]).requires_grad_(True)
    out = L.compute_policy_loss_gspo(torch.zeros_like(logp), logp, t([[-1.0]]), torch.ones_like(logp), clip_ratio=0.2)
    assert out.pg_loss.item() == pytest.approx(math.exp(10.0))
    out.pg_loss.backward()
    assert logp.grad.item() == 0.0


def test_gspo_tiny_clip_sampo():
    logp = t([[0.005, 0.005]])
    out = L.compute_policy_loss_gspo(torch.zeros_like(logp), logp, t([[1.0, 1.0]]), torch.ones_like(logp),
                                     clip_ratio_low=3e-3, clip_ratio_high=4e-3)
    assert out.pg_loss.item() == pytest.approx(-(1 + 4e-3))
    assert out.pg_clipfrac.item() == pytest.approx(1.0)


def test_gspo_all_empty_rows_zero():
    x = t([[0.3, 0.1]])
    out = L.compute_policy_loss_gspo(torch.zeros_like(x), x, t([[1.0, 1.0]]), torch.zeros_like(x))
    assert out.pg_loss.item() == 0.0


# ------------------------------------------------------------------ SAPO


def test_sapo_gate_values_and_sequence_tau():
    # r = 1: gate = 4/τ * 0.5 -> L = -2A/τ. Row 0 Ā>0 -> τ_pos=1; row 1 Ā<0 -> τ_neg=1.05 for BOTH tokens
    logp = torch.zeros(2, 2, dtype=F)
    adv = t([[1.0, 1.0], [-1.0, 0.5]])  # row 1: Ā = -0.25 < 0 even though token 1 has A>0
    out = L.compute_policy_loss_sapo(logp, logp, adv, torch.ones_like(logp), "token-mean")
    expected = (-2.0 - 2.0 + 2.0 / 1.05 - 1.0 / 1.05) / 4
    assert out.pg_loss.item() == pytest.approx(expected)
    assert out.pg_clipfrac_lower.item() == 0.0


def test_sapo_zero_mean_adv_uses_tau_neg_and_gradient():
    logp = torch.zeros(1, 2, dtype=F).requires_grad_(True)
    adv = t([[1.0, -1.0]])  # Ā = 0 -> τ_neg
    out = L.compute_policy_loss_sapo(logp.detach(), logp, adv, torch.ones(1, 2, dtype=F), "seq-mean-token-sum")
    assert out.pg_loss.item() == pytest.approx(-2 / 1.05 + 2 / 1.05)
    out.pg_loss.backward()
    assert logp.grad.flatten().tolist() == pytest.approx([-1.0, 1.0])  # -A*r at r=1


def test_sapo_diagnostic_clipfrac():
    logp = t([[math.log(1.5), math.log(0.5), math.log(1.5)]])
    adv = t([[1.0, -1.0, -1.0]])
    out = L.compute_policy_loss_sapo(torch.zeros_like(logp), logp, adv, torch.ones_like(logp))
    assert out.pg_clipfrac.item() == pytest.approx(2 / 3)


# ------------------------------------------------------------------ CISPO


def test_cispo_value_and_gradient():
    logp = t([[math.log(0.5), math.log(2.0)]]).requires_grad_(True)
    old = torch.zeros(1, 2, dtype=F)
    adv = t([[1.0, 1.0]])
    out = L.compute_policy_loss_cispo(old, logp, adv, torch.ones_like(old), "token-mean", clip_ratio_low=0.2, clip_ratio_high=0.28)
    # r̂ = [0.8, 1.28]; L = -r̂ * A * logp
    assert out.pg_loss.item() == pytest.approx((-0.8 * math.log(0.5) - 1.28 * math.log(2.0)) / 2)
    assert out.pg_clipfrac.item() == pytest.approx(1.0)
    out.pg_loss.backward()
    assert logp.grad.flatten().tolist() == pytest.approx([-0.8 / 2, -1.28 / 2])


def test_cispo_no_lower_clip_with_eps_low_one():
    logp = t([[math.log(0.1)]])
    out = L.compute_policy_loss_cispo(torch.zeros_like(logp), logp, t([[1.0]]), torch.ones_like(logp), clip_ratio_low=1.0, clip_ratio_high=0.28)
    assert out.pg_clipfrac.item() == 0.0
    assert out.pg_loss.item() == pytest.approx(-0.1 * math.log(0.1))


# ------------------------------------------------------------------ Dr.GRPO loss


def test_drgrpo_divides_by_max_len():
    logp = torch.zeros(2, 2, dtype=F)
    adv = t([[1.0, 1.0], [2.0, 2.0]])
    mask = t([[1.0, 1.0], [1.0, 0.0]])
    out = L.compute_policy_loss_drgrpo(logp, logp, adv, mask, max_response_len_per_turn=4)
    assert out.pg_loss.item() == pytest.approx(((-1 - 1) + (-2)) / 2 / 4)
    # TIS as in the vanilla loss: each token's loss times min(π_old / π_rollout, cap), then / L_max
    rollout = t([[0.0, -1.0], [0.5, 0.0]])
    tis = L.compute_policy_loss_drgrpo(logp, logp, adv, mask, max_response_len_per_turn=4, rollout_log_probs=rollout, tis_imp_ratio_cap=2.0)
    w = [[1.0, 2.0], [math.exp(-0.5), 1.0]]  # exp(0 - (-1)) = e capped at 2
    assert tis.pg_loss.item() == pytest.approx(((-1 * w[0][0] - 1 * w[0][1]) + (-2 * w[1][0])) / 2 / 4)


# ------------------------------------------------------------------ KL


def test_kl_kinds():
    lp, ref = t([0.0, -1.0]), t([-0.5, 0.0])
    assert L.kl_penalty(lp, ref, "k1").tolist() == pytest.approx([0.5, -1.0])
    assert L.kl_penalty(lp, ref, "abs").tolist() == pytest.approx([0.5, 1.0])
    assert L.kl_penalty(lp, ref, "k2").tolist() == pytest.approx([0.125, 0.5])
    d = [-0.5, 1.0]
    assert L.kl_penalty(lp, ref, "low_var_kl").tolist() == pytest.approx([math.exp(x) - x - 1 for x in d])


def test_k3_clamps_and_gradients():
    lp = t([0.0, -800.0, 0.0]).requires_grad_(True)
    ref = t([-800.0, 0.0, 0.5])
    k = L.kl_penalty(lp, ref, "k3")
    # d=-800 -> clamp(-20): e^-20 + 19 -> clamp 10; d=800 -> clamp 20 -> 10; d=0.5 -> e^.5-1.5
    assert k.tolist() == pytest.approx([10.0, 10.0, math.exp(0.5) - 1.5])
    k.sum().backward()
    assert torch.isfinite(lp.grad).all()
    assert lp.grad.tolist() == pytest.approx([0.0, 0.0, 1 - math.exp(0.5)])


@pytest.mark.parametrize("kind", ["full", "k3+", "k1+", "foo"])
def test_kl_not_implemented(kind):
    with pytest.raises(NotImplementedError):  # as the reference, for any kind it does not compute
        L.kl_penalty(t([0.0]), t([0.0]), kind)
    if kind == "foo":
        with pytest.raises(ValueError, match="unknown kl kind"):
            L.kl_penalty(t([0.0]), t([0.0]), kind)


def test_entropy_uniform():
    logits = torch.zeros(1, 1, 8)
    assert L.entropy_from_logits(logits).item() == pytest.approx(math.log(8), rel=1e-6)


def test_loss_registry():
    assert set(L.POLICY_LOSSES) == {"vanilla", "drgrpo", "gspo", "sapo", "cispo"}
    with pytest.raises(ValueError):
        L.get_policy_loss_fn("nope")
