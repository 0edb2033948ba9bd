"""Synthetic training logs with known collapses (tests, docs and the `--example` flag).

Each generator returns `list[MetricRecord]` (one per RL step, seeded numpy noise):

* `healthy_run`: success rises slowly and noisily (logistic, +-0.07 batch noise), grad norm
  log-normal around 0.3, entropy decays gently, valid-format ratio ~0.97. Must not alarm.
* `cispo_collapse_run`: the paper's CISPO-on-ALFWorld signature. Success climbs to ~0.75,
  then from `collapse_step` falls to ~0.05 within ~15 steps, grad norms explode (x20-x100)
  and the valid-format ratio drops from ~0.97 to ~0.4.
* `entropy_collapse_run`: entropy decays exponentially to ~2% of its start from
  `collapse_step` on, and success stalls and sags afterwards (exploration stops).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from arlarena_envs.contract import MetricRecord


def _base(steps: int, seed: int, peak: float = 0.8, mid: float | None = None) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(1, steps + 1, dtype=float)
    mid = steps / 3 if mid is None else mid
    curve = 0.1 + (peak - 0.1) / (1 + np.exp(-(t - mid) / (steps / 12)))
    return rng, t, curve


def _records(t, success, grad, entropy, fmt, kl, neg, clip) -> list[MetricRecord]:
    out = []
    for i, step in enumerate(t.astype(int)):
        out.append(
            MetricRecord(
                step=int(step),
                time_s=float(step) * 30.0,
                success=float(np.clip(success[i], 0, 1)),
                grad_norm=float(grad[i]),
                entropy=float(entropy[i]),
                valid_format_ratio=float(np.clip(fmt[i], 0, 1)),
                valid_action_ratio=float(np.clip(fmt[i] - 0.02, 0, 1)),
                kl_ref=float(kl[i]),
                ppo_kl=float(kl[i]) / 10,
                neg_adv_low_is_frac=float(np.clip(neg[i], 0, 1)),
                clipfrac_high=float(np.clip(clip[i], 0, 1)),
                clipfrac_low=float(np.clip(clip[i] / 4, 0, 1)),
                response_length=180.0,
                lr=1e-6,
            )
        )
    return out


def healthy_run(steps: int = 200, seed: int = 0) -> list[MetricRecord]:
    rng, t, curve = _base(steps, seed)
    success = curve + rng.normal(0, 0.07, steps)
    grad = 0.3 * np.exp(rng.normal(0, 0.35, steps))
    entropy = 0.45 + 0.4 * np.exp(-t / steps * 2) + rng.normal(0, 0.02, steps)
    fmt = 0.97 + rng.normal(0, 0.01, steps)
    kl = 0.002 + 0.02 * t / steps + np.abs(rng.normal(0, 0.003, steps))
    neg = 0.25 + rng.normal(0, 0.03, steps)
    clip = 0.02 + np.abs(rng.normal(0, 0.01, steps))
    return _records(t, success, grad, entropy, fmt, kl, neg, clip)


def cispo_collapse_run(steps: int = 185, collapse_step: int = 130, seed: int = 0) -> list[MetricRecord]:
    rng, t, curve = _base(steps, seed, peak=0.78, mid=50)
    after = np.clip((t - collapse_step) / 15.0, 0, 1)  # 0 before the collapse, 1 fifteen steps in
    success = curve * (1 - 0.93 * after) + rng.normal(0, 0.05, steps)
    grad = 0.3 * np.exp(rng.normal(0, 0.3, steps)) * (1 + 80 * after * (0.5 + rng.random(steps)))
    entropy = 0.5 + 0.1 * rng.random(steps) + 1.5 * after
    fmt = 0.97 - 0.57 * after + rng.normal(0, 0.01, steps)
    kl = 0.01 + 0.9 * after + np.abs(rng.normal(0, 0.003, steps))
    neg = 0.25 + 0.35 * after + rng.normal(0, 0.02, steps)
    clip = 0.03 + 0.2 * after + np.abs(rng.normal(0, 0.01, steps))
    return _records(t, success, grad, entropy, fmt, kl, neg, clip)


def entropy_collapse_run(steps: int = 200, collapse_step: int = 80, seed: int = 0) -> list[MetricRecord]:
    rng, t, curve = _base(steps, seed, peak=0.6)
    decay = np.where(t < collapse_step, 1.0, np.exp(-(t - collapse_step) / 10.0))
    entropy = 0.02 * 0.8 + 0.8 * decay + rng.normal(0, 0.005, steps)
    sag = np.clip((t - collapse_step - 20) / 80.0, 0, 1)
    success = curve * (1 - 0.3 * sag) + rng.normal(0, 0.04, steps)
    grad = 0.3 * np.exp(rng.normal(0, 0.3, steps))
    fmt = 0.97 + rng.normal(0, 0.01, steps)
    kl = 0.005 + 0.05 * (1 - decay) + np.abs(rng.normal(0, 0.003, steps))
    neg = 0.25 + rng.normal(0, 0.02, steps)
    clip = 0.02 + np.abs(rng.normal(0, 0.005, steps))
    return _records(t, success, grad, entropy, fmt, kl, neg, clip)


def write_run(run_dir: str | Path, records: list[MetricRecord]) -> Path:
    """Write `records` as `run_dir/metrics.jsonl` (the trainer's format); returns the file."""
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    p = d / "metrics.jsonl"
    with p.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.model_dump(mode="json", exclude_none=True), sort_keys=True) + "\n")
    return p


def write_examples(out_dir: str | Path) -> list[Path]:
    """Write the example runs (two healthy seeds, a CISPO-like collapse, an entropy collapse)."""
    out = Path(out_dir)
    runs = {
        "healthy_seed0": healthy_run(seed=0),
        "healthy_seed1": healthy_run(seed=1),
        "cispo_collapse_seed0": cispo_collapse_run(seed=0),
        "entropy_collapse_seed0": entropy_collapse_run(seed=0),
    }
    return [write_run(out / name, recs).parent for name, recs in runs.items()]
