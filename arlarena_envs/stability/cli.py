"""`arlarena stability RUN_DIR [RUN_DIR...]`: the stability report of training runs.

    arlarena stability runs/sampo_seed0 runs/sampo_seed1 runs/cispo_seed0 --out stability_report
    arlarena stability --example /tmp/stab_runs --out /tmp/stab_report   # synthetic runs, no training

Writes report.md, report.json and PNG plots to --out and prints the summary table. Exit code
0, or 3 with --fail-on-collapse when a run collapsed (for CI gates).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from arlarena_envs.errors import ConfigError

if TYPE_CHECKING:
    from arlarena_envs.stability.monitor import MonitorConfig


def add_stability_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories (metrics.jsonl / *.csv / verl *.log) or log files")
    parser.add_argument("--out", default="stability_report", help="output folder (default: stability_report)")
    parser.add_argument("--config", help="JSON or YAML file with MonitorConfig fields (thresholds)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one threshold, e.g. --set window=10")
    parser.add_argument("--example", metavar="DIR", help="write the synthetic example runs to DIR and analyse them (with any RUN_DIRs)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--json", action="store_true", help="print report.json to stdout instead of the table")
    parser.add_argument("--fail-on-collapse", action="store_true", help="exit 3 when any run collapsed")


def load_config(path: str | None, overrides: list[str]) -> MonitorConfig:
    """MonitorConfig from a JSON/YAML file of its fields, then KEY=VALUE overrides (values parsed as JSON when they parse)."""
    from arlarena_envs.stability.monitor import MonitorConfig

    data: dict = {}
    if path:
        import yaml

        try:
            text = Path(path).read_text(encoding="utf-8")
            data = yaml.safe_load(text) if path.endswith((".yaml", ".yml")) else json.loads(text)
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read the monitor config {path}: {e}") from None
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a monitor config must be a mapping of MonitorConfig fields")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set needs KEY=VALUE, got {item!r}")
        try:
            data[key] = json.loads(value)
        except json.JSONDecodeError:
            data[key] = value
    try:
        return MonitorConfig.model_validate(data)
    except ValueError as e:
        raise ConfigError(f"invalid stability thresholds: {e}") from e


def main_stability(args: argparse.Namespace) -> int:
    from arlarena_envs.stability.analysis import analyze_runs
    from arlarena_envs.stability.report import write_report
    from arlarena_envs.stability.synthetic import write_examples

    runs = list(args.runs)
    if args.example:
        runs += [str(p) for p in write_examples(args.example)]
    if not runs:
        raise ConfigError("give at least one RUN_DIR (or --example DIR for synthetic runs)")
    config = load_config(args.config, args.set)
    report = analyze_runs(runs, config)
    md = write_report(report, args.out, plots=not args.no_plots)
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True))
    else:
        print(f"{'run':<28} {'steps':>5} {'peak':>6} {'final':>6} {'AUC':>6} {'collapse@':>9} {'score':>6}")
        for r in report.runs:
            peak = "-" if r.peak_success is None else f"{r.peak_success:.3f}"
            final = "-" if r.final_success is None else f"{r.final_success:.3f}"
            auc = "-" if r.auc_success is None else f"{r.auc_success:.3f}"
            coll = str(r.collapse_onset_step) if r.collapsed else "-"
            print(f"{r.name[:28]:<28} {r.n_rl_steps:>5} {peak:>6} {final:>6} {auc:>6} {coll:>9} {r.stability_score:>6.1f}")
        print(f"report: {md}")
    return 3 if args.fail_on_collapse and any(r.collapsed for r in report.runs) else 0


add_arguments = add_stability_arguments
main = main_stability
