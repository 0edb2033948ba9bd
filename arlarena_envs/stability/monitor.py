"""The online stability monitor: the trainer feeds it one `MetricRecord` per step and gets a
`MonitorDecision` back (alarms, and an optional action: stop, roll back, tighten).

    monitor = StabilityMonitor(MonitorConfig(actions={"collapse": "rollback"}))
    for record in training_steps():
        decision = monitor.update(record)          # pydantic, `decision.model_dump_json()`
        if decision.action == "rollback":
            load_checkpoint(nearest_at_or_before(monitor.last_healthy_step))

Only `phase == "rl"` rows are judged: bc rows pass through, and eval rows only feed the
success signal when it is `eval_success`. A missing field (None) means "not measured at this
step": its checks are skipped, it is never read as zero.

Signals and alarms (thresholds are `MonitorConfig` fields; defaults in brackets):

* success: `s_t` = the row's `success`, or `eval_success` (`success_field`; "auto", the
  default, is decided by the first RL row that carries a success metric or follows an eval row:
  `success` when that row has it, else `eval_success`, counting the eval rows seen before that
  RL row; eval rows never decide it). `S_t` = trailing mean of the last `window` [5] values;
  peak `P_t` = max of `S_u` over the steps u <= t with a full window. A step is *in drop* when
  `P_t >= min_peak_success` [0.1] and `P_t - S_t >= max(success_drop_abs [0.15],
  success_drop_rel [0.3] * P_t)`. `success_drop` (critical) fires when `sustain` [3]
  consecutive success observations are in drop; its *onset* is the first step of that run.
* `grad_norm_nonfinite` (critical): grad_norm is NaN/inf. `skipped_update` (warning): the
  trainer skipped an update.
* `grad_norm_spike` (warning): `g_t > grad_spike_factor [5] * median(previous
  baseline_window [20] finite grad norms)`, once at least `warmup` [5] norms were seen.
* `valid_format_drop` (critical): `V_t` = trailing mean of valid_format_ratio over `window`;
  (peak of `V` over full windows) `- V_t >= format_drop_abs` [0.2] for `sustain` consecutive
  observations.
* `entropy_collapse` / `entropy_explosion` (critical): `E_0` = median of the first `warmup`
  entropy values; `H_t` = trailing mean over `window`; collapse when `H_t <
  entropy_collapse_ratio [0.2] * E_0`, explosion when `H_t > entropy_explosion_ratio [3] * E_0`,
  each for `sustain` consecutive observations.
* `kl_drift` (warning): `kl_ref > kl_ref_max` [0.5] (k3 KL to the reference).
* `neg_adv_low_is` (warning): `neg_adv_low_is_frac > neg_adv_low_is_max` [0.4] (finding 2:
  the mass of samples with advantage < 0 and IS ratio < 1 drives the drift).
* `clipfrac_tail` (warning): `clipfrac_high + clipfrac_low > clipfrac_max` [0.2].
* `collapse` (critical): `success_drop` fires while a corroborating alarm (grad-norm spike or
  non-finite, valid-format drop, entropy collapse/explosion, KL drift) fired within the last
  `corroborate_window` [10] steps (the paper's signature: success falls, grad norms explode,
  the valid-format ratio drops). Its onset is the success drop's onset. Rule `corroborated`.
* `collapse` also fires (rule `degeneration`) when a sustained degeneration alarm
  (valid-format drop, entropy collapse/explosion) is confirmed while `S_t <= (1 -
  success_drop_rel) * P_t` with `P_t < min_peak_success`: a drop from such a peak is noise to
  the success check, but not when the policy's outputs degenerate with it (a run that falls
  from 4 % to 0 % while its valid-format ratio halves). Its onset is the degeneration's.

Health: a step is healthy when it raised no critical alarm and is not part of a confirmed
success drop. Sustained checks are retroactive: when one is confirmed, the steps from its
onset on are unhealthy too. `last_healthy_step` is the last healthy RL step (None before the
first one): the step to roll back to (the trainer picks its newest checkpoint at or before it).

Actions: `MonitorConfig.actions` maps alarm kinds to actions (default: empty, i.e. alarms
only, action "none"). When several alarms fire the strongest action wins (stop > rollback >
tighten > none). After an action, actions are suppressed for `action_cooldown` [5] steps
(alarms still fire). "rollback" with no healthy step yet becomes "stop" (the reason says so).
"tighten" carries `clip_scale` and `lr_scale` [0.5 each]: multiply the clip range (eps) and
the learning rate by them. An RL row whose step is <= the last RL step seen (the trainer rolled
back and resumes) rewinds the monitor: it forgets every row from that step on.

Every decision with an alarm or an action is logged: to the `logging` logger
`arlarena_envs.stability.monitor` (WARNING for critical alarms and actions, INFO otherwise;
`quiet=True` turns this off) and, when `log_path` is given, as one JSON line there.
`state_dict()` / `load_state_dict()` save and restore the monitor as JSON.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from pathlib import Path
from statistics import median
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from arlarena_envs.contract import MetricRecord
from arlarena_envs.errors import ConfigError

logger = logging.getLogger(__name__)

AlarmKind = Literal[
    "collapse",
    "success_drop",
    "grad_norm_spike",
    "grad_norm_nonfinite",
    "skipped_update",
    "valid_format_drop",
    "entropy_collapse",
    "entropy_explosion",
    "kl_drift",
    "neg_adv_low_is",
    "clipfrac_tail",
]
ALARM_KINDS: tuple[str, ...] = AlarmKind.__args__  # type: ignore[attr-defined]
Action = Literal["none", "stop", "rollback", "tighten"]
ACTION_RANK: dict[str, int] = {"none": 0, "tighten": 1, "rollback": 2, "stop": 3}

CRITICAL: frozenset[str] = frozenset(
    {
        "collapse",
        "success_drop",
        "grad_norm_nonfinite",
        "valid_format_drop",
        "entropy_collapse",
        "entropy_explosion",
    }
)
# sustained alarms that say the policy itself degenerated (its outputs, not only its success)
DEGENERATION: frozenset[str] = frozenset({"valid_format_drop", "entropy_collapse", "entropy_explosion"})
# alarms that corroborate a success drop as a collapse (the paper's collapse signature)
CORROBORATING: frozenset[str] = frozenset(
    {"grad_norm_spike", "grad_norm_nonfinite", "valid_format_drop", "entropy_collapse", "entropy_explosion", "kl_drift"}
)


class MonitorConfig(BaseModel):
    """Thresholds of the stability checks (see the module docstring for the exact rules)."""

    model_config = ConfigDict(extra="forbid")

    success_field: Literal["auto", "success", "eval_success"] = Field(
        "auto", description="auto: success if the first RL row with a success metric (or after an eval row) has it, else eval_success"
    )
    window: int = Field(5, ge=1, description="trailing-mean window for success, format and entropy")
    sustain: int = Field(3, ge=1, description="consecutive observations a drop must hold")
    warmup: int = Field(5, ge=1, description="observations before baseline-relative checks start")
    min_peak_success: float = Field(0.1, ge=0.0, description="drops from lower peaks are noise")
    success_drop_abs: float = Field(0.15, ge=0.0)
    success_drop_rel: float = Field(0.3, ge=0.0, le=1.0)
    grad_spike_factor: float = Field(5.0, gt=1.0)
    baseline_window: int = Field(20, ge=1, description="grad norms in the spike baseline median")
    format_drop_abs: float = Field(0.2, gt=0.0)
    entropy_collapse_ratio: float = Field(0.2, gt=0.0, lt=1.0)
    entropy_explosion_ratio: float = Field(3.0, gt=1.0)
    kl_ref_max: float = Field(0.5, gt=0.0)
    neg_adv_low_is_max: float = Field(0.4, gt=0.0)
    clipfrac_max: float = Field(0.2, gt=0.0)
    corroborate_window: int = Field(10, ge=0, description="steps back a corroborating alarm may lie")
    actions: dict[AlarmKind, Action] = Field(default_factory=dict, description="alarm kind -> action")
    action_cooldown: int = Field(5, ge=0, description="steps after an action during which no action is taken")
    clip_scale: float = Field(0.5, gt=0.0, le=1.0, description="'tighten': multiply the clip range by this")
    lr_scale: float = Field(0.5, gt=0.0, le=1.0, description="'tighten': multiply the learning rate by this")

    @field_validator("actions", mode="before")
    @classmethod
    def _known_kinds(cls, v: object) -> object:
        if isinstance(v, dict):
            bad = [k for k in v if k not in ALARM_KINDS]
            if bad:
                raise ValueError(f"unknown alarm kinds {bad}; known: {list(ALARM_KINDS)}")
        return v


class Alarm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: AlarmKind
    step: int
    severity: Literal["warning", "critical"]
    value: float | None = Field(None, description="the signal that tripped the check")
    threshold: float | None = Field(None, description="the bound it crossed")
    onset_step: int | None = Field(None, description="for sustained checks: first step of the run")
    rule: Literal["corroborated", "degeneration"] | None = Field(None, description="collapse alarms: which rule fired")
    message: str


class MonitorDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: int
    phase: str = "rl"
    alarms: list[Alarm] = Field(default_factory=list)
    action: Action = "none"
    reason: str = ""
    healthy: bool = True
    last_healthy_step: int | None = None
    clip_scale: float | None = Field(None, description="set when action == 'tighten'")
    lr_scale: float | None = Field(None, description="set when action == 'tighten'")
    signals: dict[str, float | None] = Field(default_factory=dict, description="smoothed signals used")


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


class _Sustained:
    """Counts consecutive observations for which a condition holds; remembers the onset."""

    def __init__(self) -> None:
        self.run = 0
        self.onset: int | None = None

    def observe(self, step: int, cond: bool) -> None:
        if cond:
            if self.run == 0:
                self.onset = step
            self.run += 1
        else:
            self.run, self.onset = 0, None


class StabilityMonitor:
    """Judge a training run step by step (see the module docstring)."""

    def __init__(self, config: MonitorConfig | None = None, log_path: str | Path | None = None, quiet: bool = False):
        """log_path: append every decision with alarms/actions there as a JSON line; quiet: no
        `logging` messages (the offline evaluator replays logs quietly)."""
        if config is not None and not isinstance(config, MonitorConfig):
            raise ConfigError(f"config must be a MonitorConfig, got {type(config).__name__}")
        self.config = config or MonitorConfig()
        self.log_path = Path(log_path) if log_path is not None else None
        self.quiet = quiet
        self._records: list[MetricRecord] = []
        self._reset_state()

    # ------------------------------------------------------------------ public API

    @property
    def last_healthy_step(self) -> int | None:
        return self._healthy[-1] if self._healthy else None

    @property
    def success_field_used(self) -> str | None:
        """The field the success signal comes from ('success' / 'eval_success'; None: none seen yet)."""
        return self._success_key

    @property
    def decisions(self) -> list[MonitorDecision]:
        """Every decision of the steps currently in the history (after rewinds)."""
        return list(self._decisions)

    def update(self, record: MetricRecord | dict) -> MonitorDecision:
        """Judge one training row; returns the decision (and logs it when it has alarms/actions)."""
        if isinstance(record, dict):
            record = MetricRecord.model_validate(record)
        if not isinstance(record, MetricRecord):
            raise ConfigError(f"update() needs a MetricRecord or a dict, got {type(record).__name__}")
        if record.phase == "rl" and self._last_rl_step is not None and record.step <= self._last_rl_step:
            self._rewind(record.step)
        self._records.append(record)
        decision = self._judge(record)
        self._log(decision)
        return decision

    def state_dict(self) -> dict:
        """JSON-able state (the rows seen) for resuming the monitor with `load_state_dict`."""
        return {"config": self.config.model_dump(), "records": [r.model_dump(mode="json") for r in self._records]}

    def load_state_dict(self, state: dict) -> None:
        self.config = MonitorConfig.model_validate(state["config"])
        self._replay([MetricRecord.model_validate(r) for r in state["records"]])

    # ------------------------------------------------------------------ internals

    def _reset_state(self) -> None:
        c = self.config
        self._decisions: list[MonitorDecision] = []
        self._healthy: list[int] = []
        self._last_rl_step: int | None = None
        self._success_key: str | None = None if c.success_field == "auto" else c.success_field
        self._pending_eval: list[float] = []
        self._succ_win: deque[float] = deque(maxlen=c.window)
        self._succ_peak: float | None = None
        self._succ_drop = _Sustained()
        self._in_confirmed_drop = False
        self._grad_hist: deque[float] = deque(maxlen=c.baseline_window)
        self._n_grad = 0
        self._fmt_win: deque[float] = deque(maxlen=c.window)
        self._fmt_peak: float | None = None
        self._fmt_drop = _Sustained()
        self._ent_first: list[float] = []
        self._ent_win: deque[float] = deque(maxlen=c.window)
        self._ent_low = _Sustained()
        self._ent_high = _Sustained()
        self._corroborations: deque[tuple[int, str]] = deque()
        self._last_action_step: int | None = None
        self._silent = False

    def _replay(self, records: list[MetricRecord]) -> None:
        self._reset_state()
        self._records = []
        self._silent = True
        try:
            for r in records:
                self._records.append(r)
                self._judge(r)
        finally:
            self._silent = False

    def _rewind(self, step: int) -> None:
        """The trainer went back to before `step`: forget every row from `step` on."""
        logger.info("stability monitor: rewinding to before step %d", step)
        self._replay([r for r in self._records if r.step < step])

    def _success_value(self, r: MetricRecord) -> float | None:
        if self._success_key is None:  # auto: decided by the first RL row
            if r.phase == "eval":
                if _finite(r.eval_success):  # e.g. a step-0 baseline eval: keep until we know
                    self._pending_eval.append(float(r.eval_success))  # type: ignore[arg-type]
                return None
            if r.phase != "rl":
                return None
            if r.success is None and r.eval_success is None and not self._pending_eval:
                return None  # no success metric of any kind seen yet: undecided
            if r.success is not None:
                self._success_key = "success"
            else:
                self._success_key = "eval_success"
                for v in self._pending_eval:  # the evals seen so far count, without alarms
                    self._succ_win.append(v)
                    if len(self._succ_win) == self.config.window:
                        sm = sum(self._succ_win) / len(self._succ_win)
                        self._succ_peak = sm if self._succ_peak is None else max(self._succ_peak, sm)
            self._pending_eval = []
        if self._success_key == "success":
            return r.success if r.phase == "rl" else None
        return r.eval_success

    def _judge(self, r: MetricRecord) -> MonitorDecision:
        c = self.config
        alarms: list[Alarm] = []
        signals: dict[str, float | None] = {}
        step = r.step

        def alarm(kind: str, value: float | None, threshold: float | None, message: str, onset: int | None = None,
                  rule: str | None = None) -> None:
            alarms.append(
                Alarm(
                    kind=kind,  # type: ignore[arg-type]
                    step=step,
                    severity="critical" if kind in CRITICAL else "warning",
                    value=None if value is None or not math.isfinite(value) else float(value),
                    threshold=threshold,
                    onset_step=onset,
                    rule=rule,  # type: ignore[arg-type]
                    message=message,
                )
            )

        # -- success (may come from eval rows)
        s = self._success_value(r)
        drop_confirmed_onset: int | None = None
        if _finite(s):
            self._succ_win.append(float(s))  # type: ignore[arg-type]
            sm = sum(self._succ_win) / len(self._succ_win)
            if len(self._succ_win) == c.window:  # a peak of fewer values would be mostly noise
                self._succ_peak = sm if self._succ_peak is None else max(self._succ_peak, sm)
            peak = sm if self._succ_peak is None else self._succ_peak
            bound = max(c.success_drop_abs, c.success_drop_rel * peak)
            in_drop = peak >= c.min_peak_success and peak - sm >= bound
            self._succ_drop.observe(step, in_drop)
            signals.update(success_smoothed=sm, success_peak=peak)
            if in_drop and self._succ_drop.run >= c.sustain:
                drop_confirmed_onset = self._succ_drop.onset
                alarm(
                    "success_drop",
                    sm,
                    peak - bound,
                    f"success {sm:.3f} (mean of last {len(self._succ_win)}) is {peak - sm:.3f} below its peak "
                    f"{peak:.3f} for {self._succ_drop.run} observations (bound {bound:.3f})",
                    onset=drop_confirmed_onset,
                )
            elif not in_drop:
                self._in_confirmed_drop = False

        if r.phase != "rl":
            decision = MonitorDecision(
                step=step, phase=r.phase, alarms=alarms, healthy=not alarms, last_healthy_step=self.last_healthy_step,
                signals=signals,
            )
            if alarms:  # an eval-driven success drop: same health bookkeeping as an RL step
                self._mark_unhealthy_since(drop_confirmed_onset)
                decision = self._act(decision, alarms)
            self._decisions.append(decision)
            return decision
        self._last_rl_step = step

        # -- gradient norm
        g = r.grad_norm
        if g is not None and not math.isfinite(g):
            alarm("grad_norm_nonfinite", g, None, f"grad norm is {g}: the update must be skipped")
        elif g is not None:
            if self._n_grad >= c.warmup and self._grad_hist:
                base = median(self._grad_hist)
                signals["grad_norm_baseline"] = base
                if base > 0 and g > c.grad_spike_factor * base:
                    alarm(
                        "grad_norm_spike",
                        g,
                        c.grad_spike_factor * base,
                        f"grad norm {g:.4g} is {g / base:.1f}x the median {base:.4g} of the last {len(self._grad_hist)} steps",
                    )
            self._grad_hist.append(float(g))
            self._n_grad += 1
        if r.skipped_update:
            alarm("skipped_update", None, None, "the trainer skipped this update (non-finite gradient)")

        # -- valid-format ratio
        if _finite(r.valid_format_ratio):
            self._fmt_win.append(float(r.valid_format_ratio))  # type: ignore[arg-type]
            fm = sum(self._fmt_win) / len(self._fmt_win)
            if len(self._fmt_win) == c.window:
                self._fmt_peak = fm if self._fmt_peak is None else max(self._fmt_peak, fm)
            fpeak = fm if self._fmt_peak is None else self._fmt_peak
            dropped = fpeak - fm >= c.format_drop_abs
            self._fmt_drop.observe(step, dropped)
            signals.update(valid_format_smoothed=fm, valid_format_peak=fpeak)
            if dropped and self._fmt_drop.run >= c.sustain:
                alarm(
                    "valid_format_drop",
                    fm,
                    fpeak - c.format_drop_abs,
                    f"valid-format ratio {fm:.3f} is {fpeak - fm:.3f} below its peak {fpeak:.3f}",
                    onset=self._fmt_drop.onset,
                )

        # -- entropy
        if _finite(r.entropy):
            e = float(r.entropy)  # type: ignore[arg-type]
            self._ent_win.append(e)
            if len(self._ent_first) < c.warmup:
                self._ent_first.append(e)
            else:
                e0 = median(self._ent_first)
                hm = sum(self._ent_win) / len(self._ent_win)
                signals.update(entropy_smoothed=hm, entropy_baseline=e0)
                low, high = hm < c.entropy_collapse_ratio * e0, hm > c.entropy_explosion_ratio * e0
                self._ent_low.observe(step, low)
                self._ent_high.observe(step, high)
                if low and self._ent_low.run >= c.sustain:
                    alarm(
                        "entropy_collapse",
                        hm,
                        c.entropy_collapse_ratio * e0,
                        f"entropy {hm:.4g} fell below {c.entropy_collapse_ratio:g}x its initial {e0:.4g}",
                        onset=self._ent_low.onset,
                    )
                if high and self._ent_high.run >= c.sustain:
                    alarm(
                        "entropy_explosion",
                        hm,
                        c.entropy_explosion_ratio * e0,
                        f"entropy {hm:.4g} rose above {c.entropy_explosion_ratio:g}x its initial {e0:.4g}",
                        onset=self._ent_high.onset,
                    )

        # -- KL to the reference, finding 2, clip tails
        if _finite(r.kl_ref) and r.kl_ref > c.kl_ref_max:  # type: ignore[operator]
            alarm("kl_drift", r.kl_ref, c.kl_ref_max, f"KL to the reference {r.kl_ref:.4g} > {c.kl_ref_max:g}")
        if _finite(r.neg_adv_low_is_frac) and r.neg_adv_low_is_frac > c.neg_adv_low_is_max:  # type: ignore[operator]
            alarm(
                "neg_adv_low_is",
                r.neg_adv_low_is_frac,
                c.neg_adv_low_is_max,
                f"{r.neg_adv_low_is_frac:.3f} of samples have advantage < 0 and IS ratio < 1 (> {c.neg_adv_low_is_max:g})",
            )
        clip = [x for x in (r.clipfrac_high, r.clipfrac_low) if _finite(x)]
        if clip and sum(clip) > c.clipfrac_max:  # type: ignore[arg-type]
            alarm("clipfrac_tail", sum(clip), c.clipfrac_max, f"clip fraction {sum(clip):.3f} > {c.clipfrac_max:g}")  # type: ignore[arg-type]

        # -- collapse = success drop + a corroborating signal in the last `corroborate_window` steps
        for a in alarms:
            if a.kind in CORROBORATING:
                self._corroborations.append((step, a.kind))
        while self._corroborations and self._corroborations[0][0] < step - c.corroborate_window:
            self._corroborations.popleft()
        degenerated = [a for a in alarms if a.kind in DEGENERATION]
        if drop_confirmed_onset is not None and self._corroborations:
            kinds = sorted({k for _, k in self._corroborations})
            alarm(
                "collapse",
                signals.get("success_smoothed"),
                None,
                f"collapse: sustained success drop since step {drop_confirmed_onset} together with {', '.join(kinds)}",
                onset=drop_confirmed_onset,
                rule="corroborated",
            )
        elif degenerated and self._succ_win:
            # A drop from a peak below min_peak_success is not told apart from noise by success
            # alone, but a policy whose outputs degenerate (sustained) while its success falls
            # to (1 - success_drop_rel) of its peak or less has collapsed, however low the peak
            # (higher peaks: the corroborated rule above, with its absolute bound).
            sm = sum(self._succ_win) / len(self._succ_win)
            peak = sm if self._succ_peak is None else self._succ_peak
            if peak < c.min_peak_success and sm <= (1.0 - c.success_drop_rel) * peak:
                kinds = sorted({a.kind for a in degenerated})
                alarm(
                    "collapse",
                    sm,
                    (1.0 - c.success_drop_rel) * peak,
                    f"collapse: {', '.join(kinds)} while success {sm:.3f} is at or below {1.0 - c.success_drop_rel:g}x "
                    f"its peak {peak:.3f}",
                    onset=min(a.onset_step if a.onset_step is not None else step for a in degenerated),
                    rule="degeneration",
                )

        critical = any(a.severity == "critical" for a in alarms)
        onsets = [a.onset_step for a in alarms if a.severity == "critical" and a.onset_step is not None]
        if drop_confirmed_onset is not None:
            self._mark_unhealthy_since(drop_confirmed_onset)
        if onsets:  # a sustained check makes the steps since its onset unhealthy, retroactively
            self._drop_healthy_since(min(onsets))
        elif not critical and not self._in_confirmed_drop:
            self._healthy.append(step)
        decision = MonitorDecision(
            step=step,
            alarms=alarms,
            healthy=not critical and drop_confirmed_onset is None,
            last_healthy_step=self.last_healthy_step,
            signals=signals,
        )
        decision = self._act(decision, alarms)
        self._decisions.append(decision)
        return decision

    def _mark_unhealthy_since(self, onset: int | None) -> None:
        if onset is None:
            return
        self._in_confirmed_drop = True  # until the success signal leaves the drop
        self._drop_healthy_since(onset)

    def _drop_healthy_since(self, onset: int) -> None:
        while self._healthy and self._healthy[-1] >= onset:
            self._healthy.pop()

    def _act(self, decision: MonitorDecision, alarms: list[Alarm]) -> MonitorDecision:
        c = self.config
        chosen, why = "none", []
        for a in alarms:
            act = c.actions.get(a.kind, "none")
            if act != "none":
                why.append(f"{a.kind} -> {act}")
            if ACTION_RANK[act] > ACTION_RANK[chosen]:
                chosen = act
        if chosen == "none":
            reason = "; ".join(a.message for a in alarms) if alarms else ""
            return decision.model_copy(update={"reason": reason})
        step = decision.step
        if self._last_action_step is not None and step - self._last_action_step <= c.action_cooldown:
            return decision.model_copy(
                update={"reason": f"{'; '.join(why)} suppressed: cooldown after the action at step {self._last_action_step}"}
            )
        reason = "; ".join(why) + ": " + "; ".join(a.message for a in alarms if c.actions.get(a.kind, "none") != "none")
        update: dict = {}
        if chosen == "rollback" and self.last_healthy_step is None:
            chosen = "stop"
            reason += " (rollback asked, but no step was healthy yet: stopping instead)"
        if chosen == "rollback":
            reason += f"; roll back to the last healthy step {self.last_healthy_step}"
        if chosen == "tighten":
            update.update(clip_scale=c.clip_scale, lr_scale=c.lr_scale)
        self._last_action_step = step
        return decision.model_copy(update={"action": chosen, "reason": reason, **update})

    def _log(self, d: MonitorDecision) -> None:
        if self._silent or (not d.alarms and d.action == "none"):
            return
        if not self.quiet:
            self._emit(d)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(d.model_dump(mode="json"), sort_keys=True) + "\n")

    def _emit(self, d: MonitorDecision) -> None:
        level = logging.WARNING if d.action != "none" or any(a.severity == "critical" for a in d.alarms) else logging.INFO
        logger.log(level, "step %d: %s%s", d.step, ", ".join(a.kind for a in d.alarms) or "no alarm",
                   f" -> {d.action}" if d.action != "none" else "")


__all__ = [
    "ACTION_RANK",
    "ALARM_KINDS",
    "CORROBORATING",
    "CRITICAL",
    "Action",
    "Alarm",
    "AlarmKind",
    "MonitorConfig",
    "MonitorDecision",
    "StabilityMonitor",
]
