"""Stability of training runs: the online monitor the trainer calls every step
(`StabilityMonitor`) and the offline evaluator of logged runs (`analyze_runs`, `write_report`;
the `arlarena stability` command). See docs/stability.md."""

from __future__ import annotations

from arlarena_envs.stability.monitor import (
    Alarm,
    MonitorConfig,
    MonitorDecision,
    StabilityMonitor,
)

__all__ = ["Alarm", "MonitorConfig", "MonitorDecision", "StabilityMonitor"]
