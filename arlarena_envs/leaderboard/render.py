"""Aggregate committed result rows (`results/<Env>-vN/<policy>.json`) and render the
leaderboard as a Markdown table and a static, self-contained HTML page (click a column header
to sort; the URL fragment `#sort=<column>-<asc|desc>` sorts on load, e.g. `#sort=success-desc`).

Besides the main table: a policy x env matrix of success rates with an average column (the
mean over the envs a policy has a row for: a missing cell is left out, not counted as 0, and
the number of envs averaged is shown), pass@k for rows that sampled several times per task,
and, for trained policies, links to the run's committed artefacts (config, metrics log,
stability report, weights) with the run's provenance. A trained row is re-checked against its
artefacts: the config digest against config.json and the stability score against
`arlarena stability` on metrics.jsonl.

The aggregator refuses rows whose provenance does not match the current registry spec
(`ProvenanceMismatchError`, see models.check_provenance) or whose env is not registered
(`EnvNotFoundError`); `skip_stale=True` drops them with a note instead.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

from pydantic import ValidationError

from arlarena_envs.contract import ParseStatus
from arlarena_envs.errors import ArlArenaError, DataError
from arlarena_envs.leaderboard.evaluate import pass_figures, row_figures
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
    ("pass_k", "pass@k", True),
    ("stability", "Stability", True),
    ("episodes", "Episodes", True),
    ("checkpoint", "Checkpoint", False),
    ("run", "Training run", False),
    ("fingerprint", "Env fingerprint", False),
]

MATRIX_NOTE = (
    "Success rate per env (mean over each env's leaderboard protocol). Average = the mean of a policy's "
    "success rates over the envs it has a row for; a missing cell (–) is left out of the average, not "
    "counted as 0, so an average over fewer envs (see Envs) is not comparable with one over all of them."
)
PASS_NOTE = (
    "pass@k: a sampling policy plays each task n times; pass@k = 1 - C(n-c, k) / C(n, k) per task (c = "
    "successes), averaged over tasks (the unbiased estimator of Chen et al. 2021). A row played once per "
    "task shows pass@1 = its success rate only."
)
STABILITY_NOTE = (
    "Stability: `arlarena stability` score (0-100) of the training run's metrics log; – for policies "
    "without a training run."
)


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
    played = row.provenance.episodes * row.provenance.samples_per_task
    if not row.episodes == len(row.records) == played:
        raise RowInconsistentError(
            f"{where} ({row.env_id} / {row.policy}): episodes {row.episodes}, records {len(row.records)} and "
            f"provenance.episodes x samples_per_task {played} disagree; {fix}"
        )
    if {int(k): v for k, v in row.pass_at_k.items()} != pass_figures(row.records, row.provenance):
        raise RowInconsistentError(
            f"{where} ({row.env_id} / {row.policy}): pass@k differs from the figures recomputed from its episode records; {fix}"
        )
    want = row_figures(row.records)
    bad = [k for k, v in want.items() if _dump(getattr(row, k)) != _dump(v)]
    if bad:
        raise RowInconsistentError(
            f"{where} ({row.env_id} / {row.policy}): {', '.join(bad)} differ from the figures recomputed from its "
            f"episode records (edited?); {fix}"
        )


def check_training_artefacts(row: LeaderboardRow, results_dir: str | Path) -> None:
    """A trained row against its committed artefacts (paths relative to results_dir): every linked
    file exists, config.json hashes to `config_digest`, and `arlarena stability` on the linked
    metrics log gives the row's stability score. Raises RowInconsistentError."""
    t = row.provenance.training
    if t is None:
        return
    root = Path(results_dir)
    what = f"row {row.env_id} / {row.policy}"
    fix = "re-run `python benchmarks/make_leaderboard_rows.py --trained RUN_DIR` for it"
    for name, rel in t.artefacts.items():
        if not (root / rel).exists():
            raise RowInconsistentError(f"{what}: its {name} artefact {root / rel} is missing; {fix}")
    if "config" in t.artefacts:
        from arlarena_envs.leaderboard.trained import config_digest

        cfg = json.loads((root / t.artefacts["config"]).read_text(encoding="utf-8"))
        if config_digest(cfg) != t.config_digest:
            raise RowInconsistentError(f"{what}: {root / t.artefacts['config']} does not hash to config_digest {t.config_digest}; {fix}")
    if "metrics" not in t.artefacts:
        raise RowInconsistentError(f"{what}: a trained row links its metrics log (artefacts['metrics']); {fix}")
    from arlarena_envs.stability import analyze_runs

    score = analyze_runs([root / t.artefacts["metrics"]]).runs[0].stability_score
    if row.stability_score is None or abs(score - row.stability_score) > 1e-9:
        raise RowInconsistentError(
            f"{what}: stability score {row.stability_score} but `arlarena stability` on {root / t.artefacts['metrics']} "
            f"gives {score}; {fix}"
        )


def _dump(v: object) -> object:
    if isinstance(v, dict):
        return {k: _dump(x) for k, x in v.items()}
    return v.model_dump(mode="json") if hasattr(v, "model_dump") else v


def validate_rows(rows: list[LeaderboardRow], skip_stale: bool = False,
                  results_dir: str | Path | None = None) -> tuple[list[LeaderboardRow], list[str]]:
    """Keep the rows that match the current specs; raise on the first stale one unless skip_stale.
    Rows that contradict themselves (check_row), repeat an (env, policy) pair or, given the
    results folder, disagree with their training artefacts are always refused."""
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
        if results_dir is not None:
            check_training_artefacts(r, results_dir)
        if (r.env_id, r.policy) in seen:
            raise RowInconsistentError(f"two rows for {r.env_id} / {r.policy}: keep one (a policy has one row per env)")
        seen.add((r.env_id, r.policy))
        ok.append(r)
    return ok, notes


def pass_text(r: LeaderboardRow) -> tuple[str, str]:
    """(display, sort value = the largest k's pass@k) of the pass@k cell."""
    if not r.pass_at_k:
        return f"pass@1 {r.success.mean:.3f}", repr(r.success.mean)
    ks = sorted(int(k) for k in r.pass_at_k)
    vals = {int(k): v for k, v in r.pass_at_k.items()}
    text = ", ".join(f"pass@{k} {vals[k]:.3f}" for k in ks) + f" (n={r.provenance.samples_per_task})"
    return text, repr(vals[ks[-1]])


def artefact_links(r: LeaderboardRow, link_base: str = "") -> list[tuple[str, str]]:
    """(label, href) of a trained row's run artefacts; hrefs are link_base + the path relative to
    the results folder (link_base: from the rendered page to the results folder)."""
    t = r.provenance.training
    if t is None:
        return []
    return [(name, f"{link_base}{rel}") for name, rel in t.artefacts.items()]


def _run_text(r: LeaderboardRow) -> str:
    t = r.provenance.training
    if t is None:
        return "–"
    return f"{t.run_name} ({t.algorithm}, seed {t.seed}, {t.steps_trained} steps)"


def _cells(r: LeaderboardRow) -> dict[str, tuple[str, str]]:
    """column -> (display text, sort value)."""
    ok = r.parse_rates.get("ok", 0.0)
    stab = r.stability_score
    t = r.provenance.training
    return {
        "env": (r.env_id.split("/", 1)[-1], r.env_id),
        "policy": (r.policy, r.policy),
        "kind": (r.policy_kind, r.policy_kind),
        "success": (r.success.fmt(3), repr(r.success.mean)),
        "score": (r.score.fmt(3), repr(r.score.mean)),
        "steps": (r.steps.fmt(1), repr(r.steps.mean)),
        "parse_ok": (f"{100 * ok:.1f}%", repr(ok)),
        "pass_k": pass_text(r),
        "stability": ("–" if stab is None else f"{stab:.1f}", "" if stab is None else repr(stab)),
        "episodes": (_episodes_text(r), str(r.episodes)),
        "checkpoint": (r.provenance.checkpoint_rule, r.provenance.checkpoint_rule),
        "run": (_run_text(r), "" if t is None else t.run_name),
        "fingerprint": (r.provenance.golden_fingerprint, r.provenance.golden_fingerprint),
    }


def _episodes_text(r: LeaderboardRow) -> str:
    s = r.provenance.samples_per_task
    return str(r.episodes) if s == 1 else f"{r.episodes} ({r.provenance.episodes} tasks x {s})"


def env_matrix(rows: list[LeaderboardRow]) -> tuple[list[str], list[tuple[str, dict[str, float], float, int]]]:
    """(env ids, [(policy, env -> success mean, average over its envs, envs averaged)]): the
    policy x env matrix, policies in first-seen order; average = mean of the present cells."""
    envs = sorted({r.env_id for r in rows})
    cells: dict[str, dict[str, float]] = {}
    for r in rows:
        cells.setdefault(r.policy, {})[r.env_id] = r.success.mean
    return envs, [(p, c, sum(c.values()) / len(c), len(c)) for p, c in cells.items()]


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(rows: list[LeaderboardRow], link_base: str = "") -> str:
    """The main table, the policy x env matrix, per-task-type tables, parse rates and the
    trained rows' provenance with links (link_base: from the Markdown file to the results folder)."""
    out = ["# ARLArena leaderboard", ""]
    out.append("Mean ± standard error over each env's fixed leaderboard protocol (split, episodes, sampling from its spec).")
    out.append("")
    out.append("| " + " | ".join(h for _, h, _ in COLUMNS) + " |")
    out.append("|" + "|".join("---:" if num else "---" for _, _, num in COLUMNS) + "|")
    for r in rows:
        c = _cells(r)
        texts = {k: _md(c[k][0]) for k, _, _ in COLUMNS}
        links = artefact_links(r, link_base)
        if links:
            texts["run"] += " " + " · ".join(f"[{name}]({href})" for name, href in links)
        out.append("| " + " | ".join(texts[k] for k, _, _ in COLUMNS) + " |")
    out.append("")
    out += [STABILITY_NOTE, "", PASS_NOTE, ""]
    envs, matrix = env_matrix(rows)
    out += ["## Policy x env success", "", MATRIX_NOTE, ""]
    out.append("| Policy | " + " | ".join(e.split("/", 1)[-1] for e in envs) + " | Average | Envs |")
    out.append("|---|" + "---:|" * (len(envs) + 2))
    for pol, cells, avg, k in matrix:
        out.append(
            f"| {_md(pol)} | " + " | ".join(f"{cells[e]:.3f}" if e in cells else "–" for e in envs)
            + f" | {avg:.3f} | {k}/{len(envs)} |"
        )
    out.append("")
    trained = [r for r in rows if r.provenance.training is not None]
    if trained:
        out += ["## Trained policies: provenance", ""]
        for r in trained:
            out += [f"**{r.env_id.split('/', 1)[-1]} / {_md(r.policy)}**", ""]
            out += [f"- {k}: {_md(v)}" for k, v in training_facts(r)]
            out += [f"- {name}: [{href}]({href})" for name, href in artefact_links(r, link_base)]
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


def training_facts(r: LeaderboardRow) -> list[tuple[str, str]]:
    """(label, value) lines of a trained row's provenance, in reading order."""
    t, p = r.provenance.training, r.provenance
    assert t is not None
    ev = "" if t.checkpoint_eval_success is None else f"; the trainer's own eval success there {t.checkpoint_eval_success:.3f}"
    return [
        ("training run", f"{t.run_name}: {t.algorithm} on {t.trained_env_id}, seed {t.seed}, {t.steps_trained} of {t.total_steps} RL steps"),
        ("config digest", t.config_digest),
        ("checkpoint", f"rule {t.checkpoint_rule}, step {t.checkpoint_step}{ev}"),
        ("weights", f"sha256 {t.weights_sha256 or '?'}; " + ("committed (artefact `policy`)" if t.weights_in_repo else "not committed")),
        ("regenerate", t.regenerate),
        ("code commit", f"{t.code_commit or 'unknown'} (of the {t.code_commit_source})"),
        ("evaluated", f"{p.evaluated_at or 'unknown'} at commit {p.eval_code_commit or 'unknown'}; sampling T={p.sampling.temperature}, "
                      f"{p.episodes} tasks x {p.samples_per_task} samples"),
    ]


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
td.missing { color: #999; }
p.note { max-width: 60em; color: #444; font-size: 0.9em; }
table.training th { text-align: left; cursor: default; }
"""


_NUM = ' class="num"'


def render_html(rows: list[LeaderboardRow], notes: list[str] | None = None, link_base: str = "") -> str:
    """A static page: the sortable main table, the policy x env matrix, per-task-type tables,
    parse rates, the trained rows' provenance with links (link_base: from the page to the
    results folder), and every row's provenance as JSON."""
    e = html.escape
    head = "".join(
        f'<th data-key="{k}" data-numeric="{int(num)}" scope="col">{e(h)}</th>' for k, h, num in COLUMNS
    )
    body = []
    for r in rows:
        c = _cells(r)
        inner = {k: e(c[k][0]) for k, _, _ in COLUMNS}
        links = artefact_links(r, link_base)
        if links:
            inner["run"] += " " + " · ".join(f'<a class="artefact" data-artefact="{e(n)}" href="{e(h)}">{e(n)}</a>' for n, h in links)
        tds = "".join(
            f'<td data-key="{k}" data-value="{e(c[k][1])}"{_NUM if num else ""}>{inner[k]}</td>'
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
        f'<p class="note">{e(STABILITY_NOTE)}</p><p class="note">{e(PASS_NOTE)}</p>',
    ]
    envs, matrix = env_matrix(rows)
    mhead = "".join(f'<th scope="col" data-env="{e(x)}">{e(x.split("/", 1)[-1])}</th>' for x in envs)
    mrows = "".join(
        f'<tr data-policy="{e(pol)}"><th scope="row">{e(pol)}</th>'
        + "".join(f'<td class="num" data-env="{e(x)}">{cells[x]:.3f}</td>' if x in cells else f'<td class="num missing" data-env="{e(x)}">–</td>' for x in envs)
        + f'<td class="num avg" data-key="average">{avg:.3f}</td><td class="num" data-key="envs">{k}/{len(envs)}</td></tr>'
        for pol, cells, avg, k in matrix
    )
    parts.append(
        f'<h2>Policy x env success</h2><p class="note" id="matrix-note">{e(MATRIX_NOTE)}</p>'
        f'<table id="matrix"><thead><tr><th scope="col">Policy</th>{mhead}<th scope="col">Average</th>'
        f'<th scope="col">Envs</th></tr></thead><tbody>{mrows}</tbody></table>'
    )
    trained = [r for r in rows if r.provenance.training is not None]
    if trained:
        parts.append("<h2>Trained policies: provenance</h2>")
        for r in trained:
            facts = "".join(f"<tr><th scope=\"row\">{e(k)}</th><td>{e(v)}</td></tr>" for k, v in training_facts(r))
            facts += "".join(
                f'<tr><th scope="row">{e(n)}</th><td><a class="artefact" href="{e(h)}">{e(h)}</a></td></tr>'
                for n, h in artefact_links(r, link_base)
            )
            parts.append(
                f'<h3>{e(r.env_id)} / {e(r.policy)}</h3><table class="training" data-policy="{e(r.policy)}">'
                f"<tbody>{facts}</tbody></table>"
            )
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


def _link_base(results_dir: str | Path, page_dir: Path) -> str:
    """The relative path from a rendered page's folder to the results folder ('' when the same), '/'-terminated."""
    rel = os.path.relpath(Path(results_dir).resolve(), page_dir.resolve())
    return "" if rel == "." else Path(rel).as_posix() + "/"


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
    rows, more = validate_rows(rows, skip_stale=skip_stale, results_dir=results_dir)
    notes += more
    if out_md:
        Path(out_md).parent.mkdir(parents=True, exist_ok=True)
        base = _link_base(results_dir, Path(out_md).parent)
        Path(out_md).write_text(render_markdown(rows, base) + "".join(f"\n> {n}\n" for n in notes), encoding="utf-8")
    if out_html:
        Path(out_html).parent.mkdir(parents=True, exist_ok=True)
        Path(out_html).write_text(render_html(rows, notes, _link_base(results_dir, Path(out_html).parent)), encoding="utf-8")
    return rows, notes
