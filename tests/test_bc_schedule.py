"""The behaviour-cloning learning-rate schedule (bc_lr) and that behaviour_clone applies it."""

from __future__ import annotations

import math

import pytest

from arlarena_baselines.bc import bc_lr, behaviour_clone
from arlarena_baselines.config import BCConfig


def test_constant_schedule_is_the_configured_lr():
    cfg = BCConfig(lr=2e-3)
    assert [bc_lr(cfg, u, 100) for u in (0, 50, 99)] == [2e-3, 2e-3, 2e-3]


def test_cosine_warms_up_linearly_then_decays_to_the_floor():
    cfg = BCConfig(lr=1e-3, lr_schedule="cosine", warmup_updates=10, min_lr_ratio=0.1)
    n = 110
    lrs = [bc_lr(cfg, u, n) for u in range(n)]
    assert lrs[:10] == pytest.approx([1e-3 * (u + 1) / 10 for u in range(10)])
    assert lrs[10] == pytest.approx(1e-3)  # first update after warmup: the peak
    assert lrs[-1] == pytest.approx(1e-4)  # the last update: min_lr_ratio * lr
    middle = 10 + (n - 10 - 1) / 2
    assert bc_lr(cfg, int(middle), n) == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * int(middle - 10) / (n - 11))))
    after = lrs[10:]
    assert all(a >= b for a, b in zip(after, after[1:]))


def test_cosine_without_warmup_and_a_single_update():
    cfg = BCConfig(lr=1e-3, lr_schedule="cosine")
    assert bc_lr(cfg, 0, 50) == pytest.approx(1e-3)
    assert bc_lr(cfg, 49, 50) == pytest.approx(0.0, abs=1e-15)
    assert bc_lr(cfg, 0, 1) == pytest.approx(1e-3)


def test_behaviour_clone_sets_the_optimizer_lr_each_update():
    torch = pytest.importorskip("torch")
    import numpy as np

    from arlarena_baselines.tiny import build_tiny_model

    model = build_tiny_model(32, hidden_size=16, num_layers=1, num_heads=2, seed=0)
    encoded = [([3, 4, 5], [6, 7, 2]), ([3, 5], [7, 2]), ([4, 4, 4, 5], [6, 2])] * 4
    cfg = BCConfig(lr=1e-2, lr_schedule="cosine", warmup_updates=2, min_lr_ratio=0.5, batch_size=4, epochs=4, max_updates=10)
    logged = []
    behaviour_clone(model, encoded, cfg, np.random.default_rng(0), 0, torch.device("cpu"), 1.0, logged.append)
    assert [r.step for r in logged] == [10]
    assert logged[0].lr == pytest.approx(bc_lr(cfg, 9, 10)) and logged[0].lr == pytest.approx(5e-3)


def test_schedule_fields_are_validated():
    with pytest.raises(ValueError):
        BCConfig(lr_schedule="linear")
    with pytest.raises(ValueError):
        BCConfig(min_lr_ratio=1.5)
