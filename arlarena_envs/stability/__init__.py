"""Stability of training runs: the online monitor the trainer calls every step
(`StabilityMonitor`) and the offline evaluator of logged runs (`analyze_runs`, `write_report`;
the `arlarena stability` command). See docs/stability.md."""

from __future__ import annotations

from arlarena_envs.stability.analysis import (
    GroupStability,
    RunStability,
    StabilityReport,
    analyze_log,
    analyze_runs,
)
from arlarena_envs.stability.logs import VERL_NAME_MAP, RunLog, load_run
from arlarena_envs.stability.monitor import (
    Alarm,
    MonitorConfig,
    MonitorDecision,
    StabilityMonitor,
)
from arlarena_envs.stability.report import write_report

__all__ = [
    "VERL_NAME_MAP",
    "Alarm",
    "GroupStability",
    "MonitorConfig",
    "MonitorDecision",
    "RunLog",
    "RunStability",
    "StabilityMonitor",
    "StabilityReport",
    "analyze_log",
    "analyze_runs",
    "load_run",
    "write_report",
]
