"""Write a `StabilityReport`: `report.md` (people), `report.json` (machines) and PNG plots
(matplotlib, Agg backend): `success.png` (every run's smoothed success, collapse onsets
marked), `seeds.png` (mean +- std across the seeds of each group with several runs) and one
`run_<name>.png` per run (success, grad norm, valid ratios, entropy, KL, clip fraction and the
negative-advantage/low-IS mass, with the collapse onset and detection marked)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from arlarena_envs.stability.analysis import (
    PANELS,
    RunStability,
    StabilityReport,
    last_lineage,
    success_series,
)
from arlarena_envs.stability.logs import load_run


def _fmt(x: float | int | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def _pm(mean: float | None, std: float | None, digits: int = 3) -> str:
    if mean is None:
        return "–"
    return _fmt(mean, digits) + ("" if std is None else f" ± {_fmt(std, digits)}")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def render_markdown(report: StabilityReport, plots: dict[str, str] | None = None) -> str:
    """The Markdown report (plots: run name -> relative PNG path, plus '__success__', '__seeds__')."""
    plots = plots or {}
    c = report.config
    out = ["# Stability report", ""]
    out.append(f"arlarena-envs {report.package_version}; {len(report.runs)} run(s). Formulas: docs/stability.md.")
    out.append("")
    out.append(
        "| run | RL steps | peak success (step) | final | best − last | AUC | collapsed | onset | steps to collapse "
        "| clip p95 | neg-adv & IS<1 mean | score |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in report.runs:
        peak = f"{_fmt(r.peak_success)} ({_fmt(r.peak_step)})" if r.peak_success is not None else "–"
        out.append(
            f"| {r.name} | {r.n_rl_steps} | {peak} | {_fmt(r.final_success)} | {_fmt(r.best_minus_last)} | "
            f"{_fmt(r.auc_success)} | {'**yes**' if r.collapsed else 'no'} | {_fmt(r.collapse_onset_step)} | "
            f"{_fmt(r.steps_to_collapse)} | {_fmt(r.clipfrac_total.p95)} | {_fmt(r.neg_adv_low_is.mean)} | "
            f"{r.stability_score:.1f} |"
        )
    out.append("")
    out.append("Score = 100 · clamp(final / peak, 0, 1) · (1 − fraction of RL steps with a critical alarm).")
    out.append("")
    if "__success__" in plots:
        out += [f"![success curves]({plots['__success__']})", ""]
    out += ["## Seed variance", ""]
    out.append("| group | runs | final success | peak success | AUC | score | collapse rate |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for g in report.groups:
        out.append(
            f"| {g.group} | {len(g.runs)} | {_pm(g.final_success.mean, g.final_success.std)} | "
            f"{_pm(g.peak_success.mean, g.peak_success.std)} | {_pm(g.auc_success.mean, g.auc_success.std)} | "
            f"{_pm(g.stability_score.mean, g.stability_score.std, 1)} | {g.collapse_rate:.2f} |"
        )
    out += ["", "Values are mean ± sample std (ddof = 1) over the runs of a group; report.json has the standard errors.", ""]
    if "__seeds__" in plots:
        out += [f"![seed spread]({plots['__seeds__']})", ""]
    for r in report.runs:
        out += _run_section(r, plots.get(r.name))
    out += ["## Thresholds", "", "| setting | value |", "|---|---|"]
    for k, v in c.model_dump().items():
        out.append(f"| `{k}` | `{json.dumps(v)}` |")
    out.append("")
    return "\n".join(out)


def _run_section(r: RunStability, plot: str | None) -> list[str]:
    out = [f"## {r.name}", "", f"`{r.path}` ({r.format}); success signal: `{r.success_field}`.", ""]
    if r.collapsed:
        out.append(
            f"**Collapse** ({r.collapse_rule}) from step {r.collapse_onset_step}, confirmed at step "
            f"{r.collapse_detected_step} (delay {r.detection_delay}); last healthy step {r.last_healthy_step}."
        )
    else:
        out.append(f"No collapse; last healthy step {r.last_healthy_step}.")
    out.append("")
    if r.first_alarm_step:
        out += ["| alarm | first step | steps raised |", "|---|---:|---:|"]
        for k, s in sorted(r.first_alarm_step.items(), key=lambda kv: kv[1]):
            out.append(f"| {k} | {s} | {r.alarm_counts.get(k, 0)} |")
        out.append("")
    out += [
        "| signal | mean | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, q in (
        ("grad norm", r.grad_norm),
        ("entropy", r.entropy),
        ("KL to ref", r.kl_ref),
        ("valid-format ratio", r.valid_format_ratio),
        ("clipfrac high", r.clipfrac_high),
        ("clipfrac low", r.clipfrac_low),
        ("clipfrac total", r.clipfrac_total),
        ("neg-adv & IS<1", r.neg_adv_low_is),
    ):
        if q.n:
            out.append(f"| {label} | {_fmt(q.mean)} | {_fmt(q.p50)} | {_fmt(q.p95)} | {_fmt(q.p99)} | {_fmt(q.max)} |")
    out.append("")
    if r.neg_adv_low_is_after is not None:
        out += [
            f"Negative-advantage & IS<1 mass: {_fmt(r.neg_adv_low_is_before)} before the collapse, "
            f"{_fmt(r.neg_adv_low_is_after)} after (finding 2).",
            "",
        ]
    missing = [f for f in r.metrics_not_logged]
    if missing:
        out += [f"Not logged in this run (their plots say so): {', '.join(f'`{m}`' for m in missing)}.", ""]
    for w in r.warnings:
        out.append(f"> note: {w}")
    if r.warnings:
        out.append("")
    if plot:
        out += [f"![{r.name}]({plot})", ""]
    return out


def _smooth(vals: list[float], w: int) -> list[float]:
    return [float(np.mean(vals[max(0, i - w + 1) : i + 1])) for i in range(len(vals))]


def _series(records, field: str) -> tuple[list[int], list[float]]:
    pts = [(r.step, getattr(r, field)) for r in records if r.phase == "rl" and getattr(r, field) is not None]
    return [s for s, _ in pts], [float(v) if math.isfinite(v) else float("nan") for _, v in pts]


def plot_run(r: RunStability, records, window: int, path: Path) -> list[str]:
    """Write the run's figure; returns the metrics that were not logged (each panel that has no
    data says "not logged" instead of staying empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = last_lineage(records)
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.08, top=0.9, wspace=0.22, hspace=0.35)  # no layout engine: one draw
    ax = axes[0, 0]
    steps, succ = success_series(records, r.success_field)
    if steps:
        ax.plot(steps, succ, color="tab:blue", alpha=0.3, lw=1, label=f"{r.success_field}")
        ax.plot(steps, _smooth(succ, window), color="tab:blue", lw=2, label=f"mean of {window}")
    if r.peak_step is not None:
        ax.plot([r.peak_step], [r.peak_success], "k^", label="peak")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("success")
    missing: list[str] = []
    if not steps:
        missing.append("success")
        _say_not_logged(ax, ["success / eval_success"])
    for (i, j), fields, logy in PANELS:
        a = axes[i, j]
        absent = []
        for f, label in fields:
            s, v = _series(records, f)
            if s:
                a.plot(s, v, lw=1.2, label=label)
            else:
                absent.append((f, label))
        missing += [f for f, _ in absent]
        if logy and a.lines:
            a.set_yscale("log")
        title = " / ".join(label for _, label in fields if (_, label) not in absent) or " / ".join(label for _, label in fields)
        if a.lines and absent:
            title += f"  (not logged: {', '.join(label for _, label in absent)})"
        a.set_title(title)
        if not a.lines:
            _say_not_logged(a, [f for f, _ in absent])
    for a in axes.flat:
        if r.collapse_onset_step is not None:
            a.axvline(r.collapse_onset_step, color="red", ls="--", lw=1.5, label="collapse onset")
        if r.collapse_detected_step is not None:
            a.axvline(r.collapse_detected_step, color="red", ls=":", lw=1.5, label="collapse detected")
        a.set_xlabel("RL step")
        if a.lines:
            a.legend(fontsize=7, loc="best")
    title = f"{r.name}: score {r.stability_score:.1f}" + (f", collapse at step {r.collapse_onset_step}" if r.collapsed else "")
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return missing


def _say_not_logged(ax, fields: list[str]) -> None:
    ax.text(0.5, 0.5, "not logged in this run:\n" + "\n".join(fields), transform=ax.transAxes,
            ha="center", va="center", color="0.35", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_overview(report: StabilityReport, curves: dict[str, tuple[list[int], list[float]]], window: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.11, top=0.92)
    for r in report.runs:
        steps, vals = curves[r.name]
        if not steps:
            continue
        sm = _smooth(vals, window)
        (line,) = ax.plot(steps, sm, lw=1.8, label=r.name)
        if r.collapse_onset_step is not None and r.collapse_onset_step in steps:
            i = steps.index(r.collapse_onset_step)
            ax.plot([steps[i]], [sm[i]], "x", color=line.get_color(), ms=12, mew=3)
    ax.set_xlabel("RL step")
    ax.set_ylabel(f"success (mean of {window})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("success; x = collapse onset")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_seeds(report: StabilityReport, curves: dict[str, tuple[list[int], list[float]]], window: int, path: Path) -> bool:
    """Mean +- std across the seeds of each group with >= 2 runs, on the steps all of them have."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    multi = [g for g in report.groups if len(g.runs) >= 2]
    if not multi:
        return False
    fig, ax = plt.subplots(figsize=(9, 5))
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.11, top=0.92)
    for g in multi:
        per = [dict(zip(curves[n][0], _smooth(curves[n][1], window))) for n in g.runs]
        common = sorted(set.intersection(*(set(p) for p in per)))
        if not common:
            continue
        m = np.array([[p[s] for s in common] for p in per])
        mu, sd = m.mean(0), m.std(0, ddof=1)
        ax.plot(common, mu, lw=2, label=f"{g.group} (n={len(g.runs)})")
        ax.fill_between(common, mu - sd, mu + sd, alpha=0.25)
    ax.set_xlabel("RL step")
    ax.set_ylabel("success, mean ± std over seeds")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def write_report(report: StabilityReport, out_dir: str | Path, plots: bool = True) -> Path:
    """Write report.md, report.json and (plots=True) the PNGs into out_dir; returns report.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    rel: dict[str, str] = {}
    if plots:
        curves = {}
        for r in report.runs:
            records = load_run(r.path).records
            curves[r.name] = success_series(last_lineage(records), r.success_field)
            name = f"run_{_slug(r.name)}.png"
            plot_run(r, records, report.config.window, out / name)
            rel[r.name] = name
        plot_overview(report, curves, report.config.window, out / "success.png")
        rel["__success__"] = "success.png"
        if plot_seeds(report, curves, report.config.window, out / "seeds.png"):
            rel["__seeds__"] = "seeds.png"
    md = out / "report.md"
    md.write_text(render_markdown(report, rel), encoding="utf-8")
    return md
