"""Aggregate committed result rows (`results/<Env>-vN/<policy>.json`) and render the
leaderboard as a Markdown table and a static, self-contained HTML page (click a column header
to sort; the URL fragment `#sort=<column>-<asc|desc>` sorts on load, e.g. `#sort=success-desc`).

The aggregator refuses rows whose provenance does not match the current registry spec
(`ProvenanceMismatchError`, see models.check_provenance) or whose env is not registered
(`EnvNotFoundError`); `skip_stale=True` drops them with a note instead.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from pydantic import ValidationError

from arlarena_envs.contract import ParseStatus
from arlarena_envs.errors import ArlArenaError, DataError
from arlarena_envs.leaderboard.evaluate import row_figures
from arlarena_envs.leaderboard.models import LeaderboardRow, RowInconsistentError, check_provenance, digest_records
from arlarena_envs.registry import get_spec
from arlarena_envs.unicode import clean_json

# (key, header, numeric) of the main table, in order
COLUMNS: list[tuple[str, str, bool]] = [
    ("env", "Env", False),
    ("policy", "Policy", False),
    ("kind", "Kind", False),
    ("success", "Success", True),
    ("score", "Score", True),
    ("steps", "Avg steps", True),
    ("parse_ok", "Parse ok", True),
    ("stability", "Stability", True),
    ("episodes", "Episodes", True),
    ("checkpoint", "Checkpoint", False),
    ("fingerprint", "Env fingerprint", False),
]


ENV_FOLDER = re.compile(r"[A-Za-z][\w.-]*-v\d+")  # the name part of an env id: Sokoban-v0


def load_row_files(results_dir: str | Path) -> list[tuple[Path, LeaderboardRow]]:
    """(file, row) for every row file under results_dir (`<Name>-vN/*.json`: one folder per env
    version), sorted by env then policy. Other folders (training results such as `gain/` and
    `comparison/`) are not leaderboard rows and are passed over."""
    root = Path(results_dir)
    if not root.is_dir():
        raise DataError(f"{root}: no results folder; run `arlarena leaderboard evaluate` first")
    rows = []
    for p in sorted(root.glob("*/*.json")):
        if not ENV_FOLDER.fullmatch(p.parent.name):
            continue
        try:
            data = clean_json(json.loads(p.read_text(encoding="utf-8")))  # the text rule (unicode.py)
            rows.append((p, LeaderboardRow.model_validate(data)))
        except (ValidationError, ValueError, RecursionError, DataError) as e:  # ValueError: JSON, UTF-8
            raise DataError(f"{p}: not a leaderboard row: {str(e)[:2000]}") from None
        except OSError as e:
            raise DataError(f"{p}: cannot read it: {e}") from None
    return sorted(rows, key=lambda pr: (pr[1].env_id, pr[1].policy))


def load_rows(results_dir: str | Path) -> list[LeaderboardRow]:
    """Every row file under results_dir (`*/*.json`), sorted by env then policy."""
    return [r for _, r in load_row_files(results_dir)]


def check_row(row: LeaderboardRow, where: str = "row") -> None:
    """Raise RowInconsistentError if the row contradicts itself: its records must hash to its
    `records_digest`, its figures must be those recomputed from its records, and the episode
    count must agree between figures, records (indices 0..n-1) and provenance."""
    fix = f"re-run `arlarena leaderboard evaluate --env {row.env_id} --policy {row.policy}`"
    if not row.records or not row.records_digest:
        raise RowInconsistentError(f"{where} ({row.env_id} / {row.policy}) carries no episode records, so its figures cannot be checked; {fix}")
    if digest_records(row.records) != row.records_digest:
        raise RowInconsistentError(f"{where} ({row.env_id} / {row.policy}): its episode records do not match their digest (edited?); {fix}")
    indices = sorted(r.index for r in row.records)
    if indices != list(range(len(indices))):
        raise RowInconsistentError(f"{where} ({row.env_id} / {row.policy}): episode records are not episodes 0..{len(indices) - 1}; {fix}")
    if not row.episodes == len(row.records) == row.provenance.episodes:
        raise RowInconsistentError(
            f"{where} ({row.env_id} / {row.policy}): episodes {row.episodes}, records {len(row.records)} and "
            f"provenance.episodes {row.provenance.episodes} disagree; {fix}"
        )
    want = row_figures(row.records)
    bad = [k for k, v in want.items() if _dump(getattr(row, k)) != _dump(v)]
    if bad:
        raise RowInconsistentError(
            f"{where} ({row.env_id} / {row.policy}): {', '.join(bad)} differ from the figures recomputed from its "
            f"episode records (edited?); {fix}"
        )


def _dump(v: object) -> object:
    if isinstance(v, dict):
        return {k: _dump(x) for k, x in v.items()}
    return v.model_dump(mode="json") if hasattr(v, "model_dump") else v


def validate_rows(rows: list[LeaderboardRow], skip_stale: bool = False) -> tuple[list[LeaderboardRow], list[str]]:
    """Keep the rows that match the current specs; raise on the first stale one unless skip_stale.
    Rows that contradict themselves (check_row) or repeat an (env, policy) pair are always refused."""
    ok, notes = [], []
    seen: set[tuple[str, str]] = set()
    for r in rows:
        try:
            check_provenance(r.provenance, get_spec(r.env_id), what=f"row {r.policy}")
        except ArlArenaError as e:
            if not skip_stale:
                raise
            notes.append(f"skipped {r.env_id} / {r.policy}: {e}")
            continue
        check_row(r)
        if (r.env_id, r.policy) in seen:
            raise RowInconsistentError(f"two rows for {r.env_id} / {r.policy}: keep one (a policy has one row per env)")
        seen.add((r.env_id, r.policy))
        ok.append(r)
    return ok, notes


def _cells(r: LeaderboardRow) -> dict[str, tuple[str, str]]:
    """column -> (display text, sort value)."""
    ok = r.parse_rates.get("ok", 0.0)
    stab = r.stability_score
    return {
        "env": (r.env_id.split("/", 1)[-1], r.env_id),
        "policy": (r.policy, r.policy),
        "kind": (r.policy_kind, r.policy_kind),
        "success": (r.success.fmt(3), repr(r.success.mean)),
        "score": (r.score.fmt(3), repr(r.score.mean)),
        "steps": (r.steps.fmt(1), repr(r.steps.mean)),
        "parse_ok": (f"{100 * ok:.1f}%", repr(ok)),
        "stability": ("–" if stab is None else f"{stab:.1f}", "" if stab is None else repr(stab)),
        "episodes": (str(r.episodes), str(r.episodes)),
        "checkpoint": (r.provenance.checkpoint_rule, r.provenance.checkpoint_rule),
        "fingerprint": (r.provenance.golden_fingerprint, r.provenance.golden_fingerprint),
    }


def render_markdown(rows: list[LeaderboardRow]) -> str:
    """The main table plus a per-task-type table for envs that have task types."""
    out = ["# ARLArena leaderboard", ""]
    out.append("Mean ± standard error over each env's fixed leaderboard protocol (split, episodes, sampling from its spec).")
    out.append("")
    out.append("| " + " | ".join(h for _, h, _ in COLUMNS) + " |")
    out.append("|" + "|".join("---:" if num else "---" for _, _, num in COLUMNS) + "|")
    for r in rows:
        c = _cells(r)
        out.append("| " + " | ".join(c[k][0].replace("|", "\\|") for k, _, _ in COLUMNS) + " |")
    out.append("")
    typed = [r for r in rows if r.per_task_type]
    if typed:
        out += ["## Success by task type", ""]
        for r in typed:
            out.append(f"**{r.env_id.split('/', 1)[-1]} / {r.policy}**")
            out.append("")
            out += ["| task type | episodes | success | score |", "|---|---:|---:|---:|"]
            for t, s in r.per_task_type.items():
                out.append(f"| {t} | {s.episodes} | {s.success.fmt(3)} | {s.score.fmt(3)} |")
            out.append("")
    out += ["## Parse-status rates", "", "| env | policy | " + " | ".join(_statuses(rows)) + " |"]
    out.append("|---|---|" + "---:|" * len(_statuses(rows)))
    for r in rows:
        out.append(
            f"| {r.env_id.split('/', 1)[-1]} | {r.policy} | "
            + " | ".join(f"{100 * r.parse_rates.get(s, 0.0):.1f}%" for s in _statuses(rows))
            + " |"
        )
    out.append("")
    return "\n".join(out)


def _statuses(rows: list[LeaderboardRow]) -> list[str]:
    """The fixed parse-status taxonomy, in its order (rows may omit statuses they never saw)."""
    return [s.value for s in ParseStatus]


_JS = """
function sortTable(key, dir) {
  const table = document.getElementById('leaderboard');
  const ths = Array.from(table.tHead.rows[0].cells);
  const col = ths.findIndex(th => th.dataset.key === key);
  if (col < 0) return;
  const numeric = ths[col].dataset.numeric === '1';
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const va = a.cells[col].dataset.value, vb = b.cells[col].dataset.value;
    let c;
    if (numeric) {
      const na = va === '' ? -Infinity : parseFloat(va), nb = vb === '' ? -Infinity : parseFloat(vb);
      c = na - nb;
    } else { c = va.localeCompare(vb); }
    return dir === 'desc' ? -c : c;
  });
  rows.forEach(r => body.appendChild(r));
  ths.forEach(th => th.removeAttribute('aria-sort'));
  ths[col].setAttribute('aria-sort', dir === 'desc' ? 'descending' : 'ascending');
  table.dataset.sortedBy = key + '-' + dir;
}
document.querySelectorAll('#leaderboard th').forEach(th => th.addEventListener('click', () => {
  const cur = th.getAttribute('aria-sort');
  sortTable(th.dataset.key, cur === 'descending' ? 'asc' : 'desc');
}));
const m = /sort=([a-z_]+)-(asc|desc)/.exec(location.hash);
if (m) sortTable(m[1], m[2]);
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""


_NUM = ' class="num"'


def render_html(rows: list[LeaderboardRow], notes: list[str] | None = None) -> str:
    """A static page: the sortable main table, per-task-type tables, the rows' provenance as JSON."""
    e = html.escape
    head = "".join(
        f'<th data-key="{k}" data-numeric="{int(num)}" scope="col">{e(h)}</th>' for k, h, num in COLUMNS
    )
    body = []
    for r in rows:
        c = _cells(r)
        tds = "".join(
            f'<td data-key="{k}" data-value="{e(c[k][1])}"{_NUM if num else ""}>{e(c[k][0])}</td>'
            for k, _, num in COLUMNS
        )
        body.append(f'<tr data-env="{e(r.env_id)}" data-policy="{e(r.policy)}">{tds}</tr>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>ARLArena leaderboard</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>ARLArena leaderboard</h1>",
        "<p>Mean ± standard error over each env's fixed leaderboard protocol. Click a column header to sort.</p>",
        f'<table id="leaderboard"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>',
    ]
    typed = [r for r in rows if r.per_task_type]
    if typed:
        parts.append("<h2>Success by task type</h2>")
        for r in typed:
            trs = "".join(
                f"<tr><td>{e(t)}</td><td class=\"num\">{s.episodes}</td><td class=\"num\">{e(s.success.fmt(3))}</td>"
                f"<td class=\"num\">{e(s.score.fmt(3))}</td></tr>"
                for t, s in r.per_task_type.items()
            )
            parts.append(
                f"<h3>{e(r.env_id)} / {e(r.policy)}</h3><table class=\"types\"><thead><tr><th>task type</th>"
                f"<th>episodes</th><th>success</th><th>score</th></tr></thead><tbody>{trs}</tbody></table>"
            )
    statuses = _statuses(rows)
    trs = "".join(
        f"<tr><td>{e(r.env_id)}</td><td>{e(r.policy)}</td>"
        + "".join(f'<td class="num">{100 * r.parse_rates.get(st, 0.0):.1f}%</td>' for st in statuses)
        + "</tr>"
        for r in rows
    )
    parts.append(
        "<h2>Parse-status rates</h2><table class=\"parse\"><thead><tr><th>env</th><th>policy</th>"
        + "".join(f"<th>{e(st)}</th>" for st in statuses)
        + f"</tr></thead><tbody>{trs}</tbody></table>"
    )
    if notes:
        parts.append("<h2>Skipped rows</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    prov = {f"{r.env_id} / {r.policy}": r.provenance.model_dump(mode="json") for r in rows}
    parts.append("<details><summary>Provenance</summary><pre>" + e(json.dumps(prov, indent=1, sort_keys=True)) + "</pre></details>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"


def render(results_dir: str | Path, out_md: str | Path | None, out_html: str | Path | None, skip_stale: bool = False) -> tuple[list[LeaderboardRow], list[str]]:
    """Load, validate and write the Markdown / HTML leaderboard; returns the rows shown and the notes."""
    rows, notes = [], []
    for path, r in load_row_files(results_dir):
        if r.provenance.overrides:  # a smoke test (fewer episodes, other max steps...): never comparable
            notes.append(f"skipped {path}: evaluated with protocol overrides {r.provenance.overrides}, not a comparable row")
            continue
        folder_env = path.parent.name
        if get_spec(r.env_id).name != folder_env:
            raise RowInconsistentError(f"{path} is a row of {r.env_id}, in the folder of {folder_env}: move it to {get_spec(r.env_id).name}/")
        rows.append(r)
    rows, more = validate_rows(rows, skip_stale=skip_stale)
    notes += more
    if out_md:
        Path(out_md).parent.mkdir(parents=True, exist_ok=True)
        Path(out_md).write_text(render_markdown(rows) + "".join(f"\n> {n}\n" for n in notes), encoding="utf-8")
    if out_html:
        Path(out_html).parent.mkdir(parents=True, exist_ok=True)
        Path(out_html).write_text(render_html(rows, notes), encoding="utf-8")
    return rows, notes
