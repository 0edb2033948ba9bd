"""Loader for the official ALFWorld data (`alfworld-download` layout), with checked counts.

alfworld 0.4.2's `AlfredTWEnv.collect_game_files` walks `$ALFWORLD_DATA/json_2.1.1/<split>` and
silently skips: paths containing "movable" or "Sliced" (anywhere in the *whole* path, so a data
root named e.g. /data/movable_stuff loses every game), trials without `game.tw-pddl`, games
marked unsolvable, task types not selected. Its order is `os.walk`'s (file-system dependent).
Users then train on "0 games" or on 132 of 134 without noticing.

`collect_official_games` applies the same rules, but only to the path *below* the split folder,
sorts the result, and checks the count against the official one (3,553 train, 140 valid_seen,
134 valid_unseen), failing with a message that says what is missing and how to fix it.
Pure Python: needs neither alfworld nor textworld.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from arlarena_envs.alfworld.generator import TASK_TYPES
from arlarena_envs.errors import DataError

# env split name -> (folder under json_2.1.1, official number of playable games)
OFFICIAL_SPLITS: dict[str, tuple[str, int]] = {
    "official_train": ("train", 3553),
    "valid_seen": ("valid_seen", 140),
    "valid_unseen": ("valid_unseen", 134),
}
# the generator writes exactly the official task types
OFFICIAL_TASK_TYPES = TASK_TYPES
FIX_HINT = (
    "Point ALFWORLD_DATA (or the env kwarg data_dir=) at a complete copy of the official data "
    "(the folder holding json_2.1.1/, as `alfworld-download` writes it; re-run `alfworld-download -f` "
    "if files are missing), or use the embedded splits (train / eval_in_distribution / "
    "eval_out_of_distribution), which need no download."
)


@dataclass
class OfficialSplit:
    """The result of scanning one official split folder."""

    split_dir: Path
    games: list[Path] = field(default_factory=list)  # playable game.tw-pddl files, sorted
    skipped_by_rule: list[Path] = field(default_factory=list)  # movable / Sliced / task type: skipped as alfworld does
    missing: list[Path] = field(default_factory=list)  # trial folders without game.tw-pddl
    unloadable: list[tuple[Path, str]] = field(default_factory=list)  # unreadable JSON / traj_data
    unsolvable: list[Path] = field(default_factory=list)  # "solvable": false (or absent)


def pddl_complete(text: object) -> bool:
    """A cheap completeness test of PDDL text: non-empty, parentheses balanced (comments, from ';'
    to the end of a line, ignored) and never closing more than was opened. Catches the usual
    damage (a file cut short) at scan time, before the engine's parser fails on it at reset."""
    if not isinstance(text, str) or "(" not in text:
        return False
    depth = 0
    for line in text.splitlines():
        for ch in line.split(";", 1)[0]:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    return False
    return depth == 0


def official_slots(res: OfficialSplit) -> list[tuple[Path, str | None]]:
    """Every trial that would be a playable game in a complete download, sorted as the games
    of a complete download are: (game file, None) when playable, (game file, problem) when its
    files are missing or unreadable. Index i of a partial copy is game i of the complete one
    (as long as whole trial folders are not missing)."""
    slots: dict[Path, str | None] = {g: None for g in res.games}
    for g in res.missing:
        slots[g] = "game.tw-pddl is missing (incomplete download)"
    for path, why in res.unloadable:
        slots[path.parent / "game.tw-pddl"] = f"{path.name}: {why}"
    return sorted(slots.items())


def resolve_data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding json_2.1.1/: `data_dir`, else $ALFWORLD_DATA. Accepts the json_2.1.1
    folder itself too."""
    raw = data_dir if data_dir is not None else os.environ.get("ALFWORLD_DATA")
    if not raw:
        raise DataError("the official ALFWorld splits need the official data and none is configured. " + FIX_HINT)
    root = Path(os.path.expandvars(os.fspath(raw))).expanduser()
    if root.name == "json_2.1.1":
        root = root.parent
    if not (root / "json_2.1.1").is_dir():
        source = "data_dir" if data_dir is not None else "ALFWORLD_DATA"
        if data_dir is None and root == Path(os.path.expanduser("~/.cache/alfworld")):
            source = ("ALFWORLD_DATA, which holds alfworld's own default: `import alfworld` sets it to "
                      "~/.cache/alfworld when it is unset, so it was probably never configured")
        raise DataError(f"no json_2.1.1/ folder in {root} (from {source}). " + FIX_HINT)
    return root


def scan_split(split_dir: Path, task_types: tuple[str, ...] = OFFICIAL_TASK_TYPES) -> OfficialSplit:
    """Scan one split folder with alfworld's rules (applied below `split_dir` only)."""
    out = OfficialSplit(split_dir=split_dir)
    if not split_dir.is_dir():
        return out
    for root, dirs, files in os.walk(split_dir):
        dirs.sort()
        if "traj_data.json" not in files:
            continue
        trial = Path(root)
        rel = trial.relative_to(split_dir).as_posix()
        if "movable" in rel or "Sliced" in rel:
            out.skipped_by_rule.append(trial)
            continue
        try:
            traj = json.loads((trial / "traj_data.json").read_text(encoding="utf-8"))
            task_type = traj["task_type"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            out.unloadable.append((trial / "traj_data.json", f"{type(e).__name__}: {e}"))
            continue
        if task_type not in task_types:
            out.skipped_by_rule.append(trial)
            continue
        game = trial / "game.tw-pddl"
        if not game.exists():
            out.missing.append(game)
            continue
        try:
            data = json.loads(game.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            out.unloadable.append((game, f"{type(e).__name__}: {e}"))
            continue
        if not isinstance(data, dict) or not all(k in data for k in ("pddl_domain", "grammar", "pddl_problem")):
            out.unloadable.append((game, "not a game.tw-pddl (needs pddl_domain, grammar, pddl_problem)"))
            continue
        broken = next((k for k in ("pddl_domain", "pddl_problem") if not pddl_complete(data[k])), None)
        if broken is not None:
            out.unloadable.append((game, f"{broken} is truncated or malformed (unbalanced parentheses)"))
            continue
        if not data.get("solvable", False):
            out.unsolvable.append(game)
            continue
        out.games.append(game)
    out.games.sort()
    return out


def collect_official_games(
    data_root: str | os.PathLike, split: str, expected: int | None = -1, task_types: tuple[str, ...] = OFFICIAL_TASK_TYPES
) -> list[Path]:
    """The playable games of an official split, sorted; raises DataError unless there are
    exactly `expected` (-1: the official count of `split`; None: any number > 0)."""
    if split not in OFFICIAL_SPLITS:
        raise DataError(f"unknown official split {split!r}; official splits: {sorted(OFFICIAL_SPLITS)}")
    folder, official = OFFICIAL_SPLITS[split]
    if expected == -1:
        expected = official
    split_dir = Path(data_root) / "json_2.1.1" / folder
    res = scan_split(split_dir, task_types)
    n = len(res.games)
    if (expected is None and n > 0) or n == expected:
        return res.games
    lines = [
        f"ALFWorld split {split!r}: found {n} playable games in {split_dir}, expected "
        + (f"{expected}" if expected is not None else "at least 1")
        + (f" (the official count is {official})" if expected != official else "")
        + "."
    ]
    if not split_dir.is_dir():
        lines.append(f"The folder {split_dir} does not exist.")

    def show(title: str, items: list) -> None:
        if items:
            head = ", ".join(str(x if not isinstance(x, tuple) else f"{x[0]} ({x[1]})") for x in items[:5])
            lines.append(f"{len(items)} {title}: {head}{' ...' if len(items) > 5 else ''}")

    show("trial folders have no game.tw-pddl (incomplete download)", res.missing)
    show("files could not be read", res.unloadable)
    show("games are marked unsolvable", res.unsolvable)
    if res.skipped_by_rule:
        lines.append(f"{len(res.skipped_by_rule)} trials were skipped as alfworld does (movable / Sliced / other task types).")
    lines.append(FIX_HINT)
    raise DataError("\n".join(lines))
