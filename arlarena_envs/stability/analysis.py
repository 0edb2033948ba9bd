"""The offline stability evaluator: replay logged runs through the `StabilityMonitor` and
summarise each run, and the spread across seeds.

    report = analyze_runs(["runs/sampo_seed0", "runs/sampo_seed1", "runs/cispo_seed0"])
    write_report(report, "stability_report/")      # report.md, report.json, *.png

Per run (all success figures use the monitor's success signal `s_t`, see monitor.py; `S_t` is
its trailing mean over `window` values):

* peak = max S_t over full windows (step of the max); final = S at the last step (mean of the
  last `window` values); best_minus_last = peak - final.
* auc_success = (1 / (t_last - t_first)) * trapezoid integral of s_t over the steps: the mean
  success over training, in [0, 1] (a single point gives its value).
* collapse: the monitor's first `collapse` alarm (sustained success drop corroborated by a
  grad-norm spike, valid-format drop, entropy collapse/explosion or KL drift; or a sustained
  valid-format drop / entropy collapse or explosion while success fell to (1 -
  success_drop_rel) x a peak below min_peak_success: rule `degeneration`). When a run logs
  none of the corroborating signals, a sustained success drop alone counts (noted in the
  report). collapse_onset_step = the drop's onset; steps_to_collapse = onset - first RL step + 1;
  detection_delay = the step it was confirmed - onset.
* clip-fraction tails: p50 / p95 / p99 / max of clipfrac_high, clipfrac_low and their sum.
* neg_adv_low_is_frac (finding 2): mean, p95, max, and the means before and after the onset.
* critical_step_frac = fraction of RL steps with a critical alarm.
* learning: start = S at the first full window; gain = peak - start; noise = the standard
  error of a window mean, sigma / sqrt(window), with sigma = std(s_{t+1} - s_t) / sqrt(2) (the
  step-to-step noise, insensitive to trends). The run *learned* when
  gain >= max(min_peak_success [0.1], (2 + sqrt(2 ln n)) * noise), n = the number of full
  windows: the largest of n window means of pure noise lies ~sqrt(2 ln n) standard errors above
  their mean, and the start window up to ~2 below it, so a noise run does not pass.
* stability_score = 100 * retention * calm when the run learned, with retention =
  clamp(final / peak, 0, 1) and calm = 1 - critical_step_frac; 0 when it never learned (there
  was nothing to keep: a flat or pure-noise run would otherwise score final/peak of two noise
  values, a mid-range number). 100 = kept its best success and never raised a critical alarm; a run that
  collapses to zero scores ~0. It measures stability of what was learned, not skill.

Across runs, runs are grouped by name with a trailing seed suffix removed (`cispo_seed1`,
`cispo-s2`, `cispo.seed3` -> `cispo`); per group: mean, std (ddof=1) and standard error of
final, peak, auc and the score, and the collapse rate.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from arlarena_envs.contract import MetricRecord
from arlarena_envs.stability.logs import RunLog, load_run
from arlarena_envs.stability.monitor import CRITICAL, MonitorConfig, MonitorDecision, StabilityMonitor

_SEED_SUFFIX = re.compile(r"([-_.](seed|s)[-_]?\d+)$", re.IGNORECASE)
CORROBORATING_FIELDS = ("grad_norm", "valid_format_ratio", "entropy", "kl_ref")
# the panels of a run's figure (report.plot_run): (row, column), [(MetricRecord field, label)], log y
PANELS: list[tuple[tuple[int, int], list[tuple[str, str]], bool]] = [
    ((0, 1), [("grad_norm", "grad norm")], True),
    ((0, 2), [("valid_format_ratio", "valid format"), ("valid_action_ratio", "valid action")], False),
    ((1, 0), [("entropy", "entropy")], False),
    ((1, 1), [("kl_ref", "KL to ref"), ("ppo_kl", "ppo KL (k1)")], False),
    ((1, 2), [("clipfrac_high", "clipfrac high"), ("clipfrac_low", "clipfrac low"), ("neg_adv_low_is_frac", "adv<0 & IS<1")], False),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Quantiles(_Model):
    n: int = 0
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    min: float | None = None


class Spread(_Model):
    """mean, std (ddof=1; None for one run) and standard error = std / sqrt(n)."""

    n: int
    mean: float | None = None
    std: float | None = None
    stderr: float | None = None


class RunStability(_Model):
    name: str
    group: str
    path: str
    format: str
    n_rl_steps: int
    first_step: int | None
    last_step: int | None
    success_field: str | None
    peak_success: float | None = None
    peak_step: int | None = None
    final_success: float | None = None
    best_minus_last: float | None = None
    start_success: float | None = Field(None, description="S at the first full window")
    learning_gain: float | None = Field(None, description="peak - start")
    learned: bool = Field(False, description="gain beyond noise and min_peak_success; else the score is 0")
    metrics_not_logged: list[str] = Field(default_factory=list, description="plotted metrics no RL row carries")
    auc_success: float | None = None
    collapsed: bool = False
    collapse_rule: str | None = Field(None, description="'corroborated', 'degeneration' or 'success_only'")
    collapse_onset_step: int | None = None
    collapse_detected_step: int | None = None
    steps_to_collapse: int | None = None
    detection_delay: int | None = None
    first_alarm_step: dict[str, int] = Field(default_factory=dict)
    alarm_counts: dict[str, int] = Field(default_factory=dict)
    critical_step_frac: float = 0.0
    last_healthy_step: int | None = None
    grad_norm: Quantiles = Field(default_factory=Quantiles)
    entropy_start: float | None = None
    entropy_end: float | None = None
    entropy: Quantiles = Field(default_factory=Quantiles)
    kl_ref: Quantiles = Field(default_factory=Quantiles)
    valid_format_ratio: Quantiles = Field(default_factory=Quantiles)
    clipfrac_high: Quantiles = Field(default_factory=Quantiles)
    clipfrac_low: Quantiles = Field(default_factory=Quantiles)
    clipfrac_total: Quantiles = Field(default_factory=Quantiles)
    neg_adv_low_is: Quantiles = Field(default_factory=Quantiles)
    neg_adv_low_is_before: float | None = None
    neg_adv_low_is_after: float | None = None
    stability_score: float
    warnings: list[str] = Field(default_factory=list)


class GroupStability(_Model):
    group: str
    runs: list[str]
    final_success: Spread
    peak_success: Spread
    auc_success: Spread
    stability_score: Spread
    collapse_rate: float


class StabilityReport(_Model):
    package_version: str
    config: MonitorConfig
    runs: list[RunStability]
    groups: list[GroupStability]


# ---------------------------------------------------------------------------------- helpers


def group_name(run_name: str) -> str:
    """The run name without a trailing seed suffix (`cispo_seed1` -> `cispo`)."""
    return _SEED_SUFFIX.sub("", run_name) or run_name


def quantiles(values: Sequence[float | None]) -> Quantiles:
    """Summary of the finite values (non-finite and missing values are left out)."""
    xs = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if xs.size == 0:
        return Quantiles()
    q = np.quantile(xs, [0.5, 0.95, 0.99])
    return Quantiles(
        n=int(xs.size), mean=float(xs.mean()), p50=float(q[0]), p95=float(q[1]), p99=float(q[2]),
        max=float(xs.max()), min=float(xs.min()),
    )


def spread(values: Sequence[float | None]) -> Spread:
    """mean, sample std (ddof=1) and standard error std/sqrt(n) of the non-missing values."""
    xs = np.array([v for v in values if v is not None], dtype=float)
    if xs.size == 0:
        return Spread(n=0)
    if xs.size == 1:
        return Spread(n=1, mean=float(xs[0]))
    sd = float(xs.std(ddof=1))
    return Spread(n=int(xs.size), mean=float(xs.mean()), std=sd, stderr=sd / math.sqrt(xs.size))


def area_under_curve(steps: Sequence[int], values: Sequence[float]) -> float | None:
    """(1 / (t_last - t_first)) * trapezoid integral of values over steps (mean level, in value units)."""
    if not values:
        return None
    if len(values) == 1 or steps[-1] == steps[0]:
        return float(np.mean(values))
    t, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    return float(np.sum((v[1:] + v[:-1]) / 2 * np.diff(t)) / (t[-1] - t[0]))


def stability_score(peak: float | None, final: float | None, critical_step_frac: float, learned: bool = True) -> float:
    """100 * clamp(final / peak, 0, 1) * (1 - critical_step_frac) for a run that learned, else 0."""
    if not learned or not peak or final is None:
        return 0.0
    retention = min(1.0, max(0.0, final / peak))
    return 100.0 * retention * (1.0 - critical_step_frac)


def learning_gain(smoothed: Sequence[float], raw: Sequence[float], window: int, min_gain: float) -> tuple[float | None, float | None, bool]:
    """(start, gain, learned): start = the first full-window mean, gain = peak - start, learned =
    gain >= max(min_gain, (2 + sqrt(2 ln n)) * noise) over n full windows (module docstring)."""
    if not smoothed:
        return None, None, False
    full = smoothed[window - 1 :] if len(smoothed) >= window else smoothed
    start, gain = full[0], max(full) - full[0]
    noise = float(np.std(np.diff(np.asarray(raw, dtype=float)))) / math.sqrt(2) / math.sqrt(window) if len(raw) > 2 else 0.0
    chance = (2.0 + math.sqrt(2.0 * math.log(max(len(full), 2)))) * noise
    return start, gain, gain >= max(min_gain, chance)


def last_lineage(records: list[MetricRecord]) -> list[MetricRecord]:
    """Drop rows a rollback overwrote: when a step repeats, rows from the old attempt go."""
    out: list[MetricRecord] = []
    for r in records:
        if r.phase == "rl":
            while out and out[-1].phase == "rl" and out[-1].step >= r.step:
                out.pop()
            # eval rows of abandoned steps go too
            while out and out[-1].step >= r.step and out[-1].phase != "bc":
                out.pop()
        out.append(r)
    return out


# ---------------------------------------------------------------------------------- analysis


def replay(records: list[MetricRecord], config: MonitorConfig | None = None) -> tuple[StabilityMonitor, list[MonitorDecision]]:
    """Feed every record to a fresh monitor; returns it and the decisions (rewinds included)."""
    monitor = StabilityMonitor(config or MonitorConfig(), quiet=True)
    decisions = [monitor.update(r) for r in records]
    return monitor, decisions


def success_series(records: list[MetricRecord], field: str | None) -> tuple[list[int], list[float]]:
    """(steps, values) of the success signal the monitor used (finite values only)."""
    steps, vals = [], []
    for r in records:
        if field == "success" and r.phase != "rl":
            continue
        v = getattr(r, field) if field else None
        if v is not None and math.isfinite(v):
            steps.append(r.step)
            vals.append(float(v))
    return steps, vals


def analyze_log(log: RunLog, config: MonitorConfig | None = None) -> RunStability:
    """Summarise one loaded run (see the module docstring for every formula)."""
    config = config or MonitorConfig()
    monitor, _ = replay(log.records, config)
    decisions = monitor.decisions  # the surviving history after rewinds
    records = last_lineage(log.records)
    rl = [r for r in records if r.phase == "rl"]
    field = monitor.success_field_used  # None: the log has no success signal
    steps, succ = success_series(records, field)
    w = config.window
    smoothed = [float(np.mean(succ[max(0, i - w + 1) : i + 1])) for i in range(len(succ))]
    full = smoothed[w - 1 :] if len(smoothed) >= w else smoothed
    peak = max(full) if full else None
    peak_step = steps[(w - 1 if len(smoothed) >= w else 0) + int(np.argmax(full))] if full else None
    final = smoothed[-1] if smoothed else None
    start, gain, learned = learning_gain(smoothed, succ, w, config.min_peak_success)

    first_alarm: dict[str, int] = {}
    counts: dict[str, int] = {}
    critical_steps: set[int] = set()
    collapse_d = drop_d = None
    for d in decisions:
        for a in d.alarms:
            first_alarm.setdefault(a.kind, d.step)
            counts[a.kind] = counts.get(a.kind, 0) + 1
            if a.kind in CRITICAL:
                critical_steps.add(d.step)
            if a.kind == "collapse" and collapse_d is None:
                collapse_d = a
            if a.kind == "success_drop" and drop_d is None:
                drop_d = a
    warnings = list(log.warnings)
    rule = None
    if collapse_d is not None:
        rule = collapse_d.rule or "corroborated"
    elif drop_d is not None and not any(getattr(r, f) is not None for r in rl for f in CORROBORATING_FIELDS):
        collapse_d, rule = drop_d, "success_only"
        warnings.append("no grad-norm / format / entropy / KL metrics logged: a sustained success drop alone counts as collapse")
    if smoothed and not learned:
        warnings.append(
            f"never learned: success rose {gain:.3f} above its start ({start:.3f}), within noise or below "
            f"min_peak_success {config.min_peak_success}; stability score 0 (nothing to keep)"
        )
    if field is None:
        warnings.append("no success metric (success or eval_success / episode/success_rate / val/success_rate) in the log")
    first_step = rl[0].step if rl else (records[0].step if records else None)
    onset = collapse_d.onset_step if collapse_d is not None else None
    n_rl = len({r.step for r in rl})
    crit_frac = len(critical_steps) / n_rl if n_rl else 0.0

    ent = [r.entropy for r in rl if r.entropy is not None and math.isfinite(r.entropy)]
    neg = [(r.step, r.neg_adv_low_is_frac) for r in rl if r.neg_adv_low_is_frac is not None]
    before = [v for s, v in neg if onset is None or s < onset]
    after = [v for s, v in neg if onset is not None and s >= onset]
    clip_total = [
        (r.clipfrac_high or 0.0) + (r.clipfrac_low or 0.0) if (r.clipfrac_high is not None or r.clipfrac_low is not None) else None
        for r in rl
    ]
    return RunStability(
        name=log.name,
        group=group_name(log.name),
        path=log.path,
        format=log.format,
        n_rl_steps=n_rl,
        first_step=first_step,
        last_step=rl[-1].step if rl else (records[-1].step if records else None),
        success_field=field,
        peak_success=peak,
        peak_step=peak_step,
        final_success=final,
        best_minus_last=None if peak is None or final is None else peak - final,
        auc_success=area_under_curve(steps, succ),
        collapsed=collapse_d is not None,
        collapse_rule=rule,
        collapse_onset_step=onset,
        collapse_detected_step=collapse_d.step if collapse_d is not None else None,
        steps_to_collapse=None if onset is None or first_step is None else onset - first_step + 1,
        detection_delay=None if collapse_d is None or onset is None else collapse_d.step - onset,
        first_alarm_step=first_alarm,
        alarm_counts=counts,
        critical_step_frac=crit_frac,
        last_healthy_step=monitor.last_healthy_step,
        grad_norm=quantiles([r.grad_norm for r in rl]),
        entropy_start=float(np.mean(ent[: config.warmup])) if ent else None,
        entropy_end=float(np.mean(ent[-config.window :])) if ent else None,
        entropy=quantiles(ent),
        kl_ref=quantiles([r.kl_ref for r in rl]),
        valid_format_ratio=quantiles([r.valid_format_ratio for r in rl]),
        clipfrac_high=quantiles([r.clipfrac_high for r in rl]),
        clipfrac_low=quantiles([r.clipfrac_low for r in rl]),
        clipfrac_total=quantiles(clip_total),
        neg_adv_low_is=quantiles([v for _, v in neg]),
        neg_adv_low_is_before=float(np.mean(before)) if before else None,
        neg_adv_low_is_after=float(np.mean(after)) if after else None,
        start_success=start,
        learning_gain=gain,
        learned=learned,
        stability_score=stability_score(peak, final, crit_frac, learned),
        metrics_not_logged=_not_logged(rl, field),
        warnings=warnings,
    )


def _not_logged(rl: list[MetricRecord], success_field: str | None) -> list[str]:
    missing = [] if success_field else ["success"]
    for _, fields, _ in PANELS:
        missing += [f for f, _ in fields if not any(getattr(r, f) is not None for r in rl)]
    return missing


def group_runs(runs: list[RunStability]) -> list[GroupStability]:
    """Seed variance: runs grouped by `group_name`, groups in first-seen order."""
    groups: dict[str, list[RunStability]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    return [
        GroupStability(
            group=g,
            runs=[r.name for r in rs],
            final_success=spread([r.final_success for r in rs]),
            peak_success=spread([r.peak_success for r in rs]),
            auc_success=spread([r.auc_success for r in rs]),
            stability_score=spread([r.stability_score for r in rs]),
            collapse_rate=sum(r.collapsed for r in rs) / len(rs),
        )
        for g, rs in groups.items()
    ]


def analyze_runs(
    run_dirs: Sequence[str | Path], config: MonitorConfig | None = None, names: Sequence[str] | None = None
) -> StabilityReport:
    """Load and analyse every run (directories or log files); the report the CLI writes."""
    from arlarena_envs import __version__

    config = config or MonitorConfig()
    logs = [load_run(d, name=names[i] if names else None) for i, d in enumerate(run_dirs)]
    seen: dict[str, int] = {}
    for lg in logs:  # two runs named alike (a/seed0, b/seed0): qualify with the parent folder
        seen[lg.name] = seen.get(lg.name, 0) + 1
    for lg in logs:
        if seen[lg.name] > 1:
            lg.name = f"{Path(lg.path).parent.parent.name}/{lg.name}"
    runs = [analyze_log(lg, config) for lg in logs]
    return StabilityReport(package_version=__version__, config=config, runs=runs, groups=group_runs(runs))
