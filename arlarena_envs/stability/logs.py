"""Read training logs into `MetricRecord`s: our `metrics.jsonl`, a CSV export (W&B, pandas) and
verl console logs. Metric names as verl / ARLArena log them are mapped to our fields by
`VERL_NAME_MAP` (docs/stability.md prints the table).

Formats (a RUN_DIR may also be the file itself):

* `metrics.jsonl`: one JSON object per line, `MetricRecord` field names (or verl names). A
  truncated last line (the trainer died mid-write) is skipped with a warning; any other bad
  line is an error.
* `*.csv`: a header row with our field names and/or verl names. An empty cell is "not
  measured"; `nan`/`inf` are kept as values (a non-finite grad norm is an alarm).
* `*.log` / `*.txt`: verl console lines `step:12 - actor/grad_norm:0.31 - val/success_rate:0.5 ...`
  (other lines are ignored).

The step column is the first present of `STEP_KEYS`. Columns that map to nothing are kept as
extra keys of the record (MetricRecord allows extras).

Rows are classified and merged (`classify_phase`, `merge_split_rows`):

* a row without a `phase` that carries only validation metrics (`eval_success`, `eval_score`,
  `val/...`, `eval/...` keys, besides step / time / `_`-prefixed bookkeeping) is an `eval` row:
  verl logs a step-0 validation before training and W&B exports keep it on its own line; read as
  an RL row it would make the monitor's automatic success signal pick the sparse validation curve;
* consecutive RL rows of the same step whose metrics do not overlap are one row split over
  several lines (a validation line after the training line, W&B's per-call lines), not a
  rollback; a repeated step that logs the same metric again is a rollback (read as a rewind).

Every string read is put under the text rule (arlarena_envs/unicode.py); unreadable input
(not UTF-8, not JSON, nested too deep, a malformed CSV) is a `DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arlarena_envs.contract import MetricRecord
from arlarena_envs.errors import DataError
from arlarena_envs.unicode import clean_json

# verl / ARL-Arena metric name -> MetricRecord field. When several names map to one field, the
# first one present in a row wins (so the main entropy curve beats the padded one).
VERL_NAME_MAP: dict[str, str] = {
    "actor/grad_norm": "grad_norm",
    "actor/entropy_loss": "entropy",
    "actor/new_log_prob_entropy": "entropy",
    "actor/pg_clipfrac": "clipfrac_high",
    "actor/pg_clipfrac_lower": "clipfrac_low",
    "actor/ppo_kl": "ppo_kl",
    "actor/kl_loss": "kl_ref",
    "actor/num_masked_seqs": "masked_seqs",
    "actor/pg_loss": "pg_loss",
    "actor/lr": "lr",
    "episode/valid_action_ratio": "valid_action_ratio",
    "episode/valid_response_format_ratio": "valid_format_ratio",
    "episode/success_rate": "success",
    "val/success_rate": "eval_success",
    "critic/score/mean": "score",
    "val/text/test_score": "eval_score",
    "response_length/mean": "response_length",
    "_runtime": "time_s",
}
STEP_KEYS: tuple[str, ...] = ("step", "training/global_step", "global_step", "trainer/global_step", "Step", "_step")
_FIELDS = set(MetricRecord.model_fields)
_CONSOLE = re.compile(r"step:(\d+)\s+-\s+(.*)$")


class RunLog(BaseModel):
    """The records of one run, sorted by (step, phase), with where they came from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    path: str
    format: str
    records: list[MetricRecord]
    warnings: list[str] = Field(default_factory=list)


def map_row(row: dict[str, Any]) -> dict[str, Any]:
    """Rename verl / W&B keys to MetricRecord fields (our own names win over mapped ones)."""
    out: dict[str, Any] = {}
    for key in STEP_KEYS:
        if row.get(key) is not None:
            out["step"] = row[key]
            break
    for k, v in row.items():
        if k in STEP_KEYS or v is None:
            continue
        if k in _FIELDS:
            out[k] = v
    for k, field in VERL_NAME_MAP.items():
        if field not in out and row.get(k) is not None:
            out[field] = row[k]
    for k, v in row.items():  # everything else is kept as an extra key
        if k not in out and k not in STEP_KEYS and k not in VERL_NAME_MAP and v is not None and k not in _FIELDS:
            out[k] = v
    return out


_EVAL_FIELDS = {"eval_success", "eval_score"}
_NEUTRAL_FIELDS = {"step", "phase", "time_s"}
_EVAL_PREFIXES = ("val/", "val-", "val_", "eval/", "eval-", "eval_", "validation/", "test/")


def classify_phase(mapped: dict[str, Any]) -> dict[str, Any]:
    """`mapped` with phase "eval" when it has no phase and carries validation metrics only."""
    if "phase" in mapped:
        return mapped
    has_eval = False
    for k, v in mapped.items():
        if v is None or k in _NEUTRAL_FIELDS or k.startswith("_") or k.startswith("timing"):
            continue
        if k in _EVAL_FIELDS or k.startswith(_EVAL_PREFIXES):
            has_eval = True
        else:
            return mapped  # a training metric: an RL row
    return {**mapped, "phase": "eval"} if has_eval else mapped


def merge_split_rows(records: list[MetricRecord]) -> list[MetricRecord]:
    """Merge consecutive RL rows of one step whose set metrics are disjoint (one row written over
    several lines); rows that repeat a metric stay apart (a rollback re-logs the step)."""
    out: list[MetricRecord] = []
    for r in records:
        prev = out[-1] if out else None
        if prev is not None and r.phase == "rl" and prev.phase == "rl" and r.step == prev.step:
            a = {k: v for k, v in prev.model_dump().items() if v is not None and k not in ("step", "phase")}
            b = {k: v for k, v in r.model_dump().items() if v is not None and k not in ("step", "phase")}
            if not set(a) & set(b):
                out[-1] = MetricRecord.model_validate({**a, **b, "step": r.step, "phase": "rl"})
                continue
        out.append(r)
    return out


MAX_NESTING = 32  # a metrics row is flat; extras may hold small structures, nothing deeper


def _record(row: dict[str, Any], where: str) -> MetricRecord:
    try:
        row = clean_json(row, max_depth=MAX_NESTING)
    except DataError as e:
        raise DataError(f"{where}: {e}; not a metrics row") from None
    mapped = classify_phase(map_row(row))
    if "step" not in mapped:
        raise DataError(f"{where}: no step column (one of {list(STEP_KEYS)}); add one to the log")
    try:
        mapped["step"] = int(float(mapped["step"]))
        return MetricRecord.model_validate(mapped)
    except (TypeError, ValueError, OverflowError, ValidationError) as e:
        raise DataError(f"{where}: not a valid metrics row: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return " | ".join(t.strip() for t in text[:4])[:500] if text else type(e).__name__


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); export the log as UTF-8") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it: {e.strerror or e}") from None


def _cell(v: str) -> Any:
    v = v.strip()
    if v == "":
        return None
    try:
        return float(v)
    except ValueError:
        low = v.lower()
        if low in ("true", "false"):
            return low == "true"
        return v


def read_jsonl(path: Path) -> tuple[list[MetricRecord], list[str]]:
    lines = _read_text(path).splitlines()
    out, warnings = [], []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):
                warnings.append(f"{path}:{i}: truncated last line skipped")
                continue
            raise DataError(f"{path}:{i}: not JSON ({e}); fix or delete the line") from None
        except RecursionError:
            raise DataError(f"{path}:{i}: JSON nested too deeply to be a metrics row; fix or delete the line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{i}: a metrics line must be a JSON object")
        out.append(_record(row, f"{path}:{i}"))
    return out, warnings


def read_csv(path: Path) -> list[MetricRecord]:
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if not reader.fieldnames:
            raise DataError(f"{path}: empty CSV (a header row with the metric names is needed)")
        return [
            _record({k: _cell(v if isinstance(v, str) else "") for k, v in row.items() if isinstance(k, str) and k}, f"{path}:{n + 2}")
            for n, row in enumerate(reader)
        ]
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None


def read_console(path: Path) -> list[MetricRecord]:
    out = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"{path}: cannot read it: {e.strerror or e}") from None
    for i, line in enumerate(text.splitlines(), start=1):
        m = _CONSOLE.search(line)
        if not m:
            continue
        row: dict[str, Any] = {"step": int(m.group(1))}
        for part in m.group(2).split(" - "):
            key, sep, val = part.rpartition(":")
            if not sep or not key.strip():
                continue
            v = _cell(val)
            if isinstance(v, float):
                row[key.strip()] = v
        out.append(_record(row, f"{path}:{i}"))
    if not out:
        raise DataError(f"{path}: no verl console lines ('step:N - key:value - ...') found")
    return out


def find_log(run: str | Path) -> Path:
    """The log file of a run directory (metrics.jsonl, else metrics.csv, else the only *.jsonl /
    *.csv / *.log file); a file is returned as is."""
    p = Path(run)
    if p.is_file():
        return p
    if not p.is_dir():
        raise DataError(f"{p}: no such run directory or log file")
    for name in ("metrics.jsonl", "metrics.csv"):
        if (p / name).is_file():
            return p / name
    for pattern in ("*.jsonl", "*.csv", "*.log", "*.txt"):
        found = sorted(x for x in p.glob(pattern) if x.name != "monitor.jsonl")
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise DataError(f"{p}: several {pattern} files ({[x.name for x in found]}); pass the file itself")
    raise DataError(f"{p}: no metrics.jsonl / metrics.csv / *.log found; point at the trainer's run directory")


def load_run(run: str | Path, name: str | None = None) -> RunLog:
    """Read one run (a directory or a log file) into sorted MetricRecords."""
    path = find_log(run)
    warnings: list[str] = []
    suffix = path.suffix.lower()
    if suffix == ".jsonl" or suffix == ".json":
        records, warnings = read_jsonl(path)
        fmt = "jsonl"
    elif suffix == ".csv":
        records, fmt = read_csv(path), "csv"
    else:
        records, fmt = read_console(path), "console"
    if not records:
        raise DataError(f"{path}: the log has no rows")
    records = merge_split_rows(records)
    rl = [r.step for r in records if r.phase == "rl"]
    if len(rl) != len(set(rl)):
        # a rolled-back / resumed run: file order is the history (the monitor rewinds on it)
        warnings.append(f"{path}: repeated RL steps (a resumed or rolled-back run); later rows are read as a rewind")
    else:  # exports may come in any order: bc rows first, then by step (rl before eval)
        order = {"bc": 0, "rl": 1, "eval": 2}
        records.sort(key=lambda r: (r.phase != "bc", r.step, order[r.phase]))
    if name is None:
        p = Path(run)
        name = p.name if p.is_dir() else p.stem if p.stem not in ("metrics",) else p.parent.name
    return RunLog(name=name, path=str(path), format=fmt, records=records, warnings=warnings)


