"""A thin adapter over the online stability monitor (`arlarena_envs.stability.monitor`).

The monitor is optional: when its module is missing (or its API differs), the adapter is
disabled and says why once; training goes on. Decisions: none, stop, rollback, tighten.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

from arlarena_envs.contract import MetricRecord

log = logging.getLogger(__name__)
ACTIONS = ("none", "stop", "rollback", "tighten")


@dataclass
class MonitorDecision:
    action: str = "none"
    reason: str = ""
    alarms: list[Any] = field(default_factory=list)
    clip_scale: float | None = None  # 'tighten': multiply clip eps by this (None: trainer default)
    lr_scale: float | None = None  # 'tighten': multiply the learning rate by this


class MonitorAdapter:
    """`update(record) -> MonitorDecision`; `last_healthy_step` (None when unknown)."""

    def __init__(self, enable: bool = True, config: dict[str, Any] | None = None, module: str = "arlarena_envs.stability.monitor",
                 log_path: Any = None):
        self.monitor: Any = None
        self.disabled_reason = ""
        if not enable:
            self.disabled_reason = "disabled in the config"
            return
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            self.disabled_reason = f"{module} is not available ({e})"
            return
        monitor_cls = getattr(mod, "StabilityMonitor", None)
        config_cls = getattr(mod, "MonitorConfig", None)
        if monitor_cls is None:
            self.disabled_reason = f"{module} has no StabilityMonitor"
            return
        cfg = config or {}
        args: list[Any] = [config_cls(**cfg)] if config_cls is not None else []
        kwargs: dict[str, Any] = {} if config_cls is not None else dict(cfg)
        if log_path is not None and "log_path" in inspect.signature(monitor_cls).parameters:
            kwargs["log_path"] = log_path
        self.monitor = monitor_cls(*args, **kwargs)

    @property
    def enabled(self) -> bool:
        return self.monitor is not None

    def update(self, record: MetricRecord) -> MonitorDecision:
        if self.monitor is None:
            return MonitorDecision()
        raw = self.monitor.update(record)
        if raw is None:
            return MonitorDecision()
        action = getattr(raw, "action", "none")
        action = getattr(action, "value", action)  # an enum is fine too
        action = str(action) if action is not None else "none"
        if action not in ACTIONS:
            log.warning("stability monitor returned unknown action %r; ignored", action)
            action = "none"
        alarms = list(getattr(raw, "alarms", []) or [])
        return MonitorDecision(
            action=action, reason=str(getattr(raw, "reason", "") or ""), alarms=alarms,
            clip_scale=getattr(raw, "clip_scale", None), lr_scale=getattr(raw, "lr_scale", None),
        )

    def state_dict(self) -> dict | None:
        """The monitor's JSON-able state (None when it has none): saved with checkpoints."""
        fn = getattr(self.monitor, "state_dict", None)
        return fn() if callable(fn) else None

    def load_state_dict(self, state: dict | None) -> None:
        fn = getattr(self.monitor, "load_state_dict", None)
        if state is not None and callable(fn):
            fn(state)

    @property
    def last_healthy_step(self) -> int | None:
        if self.monitor is None:
            return None
        v = getattr(self.monitor, "last_healthy_step", None)
        if callable(v) and not inspect.isclass(v):
            v = v()
        return None if v is None else int(v)


def alarms_json(alarms: list[Any]) -> list[Any]:
    """Alarms as JSON-able values (pydantic models dumped, others as strings)."""
    out = []
    for a in alarms:
        if hasattr(a, "model_dump"):
            out.append(a.model_dump(mode="json"))
        elif isinstance(a, (str, int, float, dict)):
            out.append(a)
        else:
            out.append(str(a))
    return out
