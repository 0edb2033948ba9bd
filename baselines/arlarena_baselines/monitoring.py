"""The online stability monitor inside the trainer.

The trainer shows every RL metrics row to `arlarena_envs.stability.StabilityMonitor` (the rules of
the offline evaluator, applied step by step) and carries out the `MonitorDecision` it returns:
none, stop, rollback or tighten. There is one decision type, the stability package's; a custom
monitor (config `monitor.module`) is a module with `StabilityMonitor` and `MonitorConfig` classes
whose `update(record)` returns that same type.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Protocol

from arlarena_envs.contract import MetricRecord
from arlarena_envs.errors import ConfigError
from arlarena_envs.stability.monitor import MonitorDecision


class Monitor(Protocol):
    """What the trainer needs of a monitor (StabilityMonitor has all of it)."""

    def update(self, record: MetricRecord) -> MonitorDecision: ...

    @property
    def last_healthy_step(self) -> int | None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def make_monitor(module: str, config: dict[str, Any], log_path: Path | None = None) -> Monitor:
    """Build `module.StabilityMonitor(module.MonitorConfig(**config))`, logging its decisions
    to `log_path` when the class takes one. A module or class that is missing is a ConfigError:
    a monitor the config asks for never disappears silently."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"monitor.module {module!r} cannot be imported ({e}); set monitor.enable=false to train without a monitor") from e
    monitor_cls, config_cls = getattr(mod, "StabilityMonitor", None), getattr(mod, "MonitorConfig", None)
    if monitor_cls is None or config_cls is None:
        raise ConfigError(f"monitor.module {module!r} must define StabilityMonitor and MonitorConfig")
    try:
        cfg = config_cls(**config)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"monitor.config is not a valid {module}.MonitorConfig: {e}") from e
    kwargs = {"log_path": log_path} if log_path is not None and "log_path" in inspect.signature(monitor_cls).parameters else {}
    return monitor_cls(cfg, **kwargs)


def judge(monitor: Monitor, record: MetricRecord) -> MonitorDecision:
    """The monitor's decision on `record`, checked to be the one decision type."""
    decision = monitor.update(record)
    if not isinstance(decision, MonitorDecision):
        raise ConfigError(f"{type(monitor).__name__}.update must return arlarena_envs.stability.MonitorDecision, got {type(decision).__name__}")
    return decision
