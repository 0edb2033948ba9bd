"""Where generated game files are cached, and how the cache stays bounded.

`cache_root(name)` is `$ARLARENA_CACHE/<name>` when that variable is set (it must be writable:
an explicit choice is never silently replaced), else `~/.cache/arlarena/<name>` when it can be
created and written, else `<system temp dir>/arlarena-cache-<uid>/<name>` (a read-only or
missing HOME, as in some containers). If none is writable: `DataError` naming every folder tried.

`evict_oldest(folder, keep)` bounds a cache of per-game folders: beyond `keep` entries the least
recently used ones (oldest mtime; `touch` marks use) are removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from arlarena_envs.errors import DataError

FIX = "set ARLARENA_CACHE to a writable folder (or pass cache_dir=...)"


def ensure_writable(folder: Path, what: str = "cache folder") -> Path:
    """Create `folder` (and parents) and check that files can be written there; DataError otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the {what} {folder}: {e.strerror or e}; {FIX}") from None
    try:  # a real probe: os.access answers yes to root even where writes fail
        os.rmdir(tempfile.mkdtemp(prefix=".probe-", dir=folder))
    except OSError as e:
        raise DataError(f"the {what} {folder} is not writable: {e.strerror or e}; {FIX}") from None
    return folder


def _usable(folder: Path) -> bool:
    try:
        ensure_writable(folder)
        return True
    except DataError:
        return False


def cache_root(name: str) -> Path:
    """The cache folder for `name` (see the module docstring for the order of candidates)."""
    explicit = os.environ.get("ARLARENA_CACHE")
    if explicit:
        return ensure_writable(Path(explicit).expanduser() / name, "cache folder (from ARLARENA_CACHE)")
    tried = []
    for base in (Path.home() / ".cache" / "arlarena", Path(tempfile.gettempdir()) / f"arlarena-cache-{_uid()}"):
        folder = base / name
        if _usable(folder):
            return folder
        tried.append(str(folder))
    raise DataError(f"no writable cache folder for {name}: tried {', '.join(tried)}; {FIX}")


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "user"


def touch(folder: Path) -> None:
    """Mark a cached entry as used now (best effort: a read-only cache is still readable)."""
    try:
        os.utime(folder)
    except OSError:
        pass


def evict_oldest(folder: Path, keep: int, protect: Path | None = None) -> int:
    """Remove the least recently used sub-folders of `folder` beyond `keep`; returns how many.
    Hidden entries (in-progress temporary folders) and `protect` are never removed."""
    try:
        entries = [e for e in os.scandir(folder) if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    except OSError:
        return 0
    if len(entries) <= keep:
        return 0
    entries.sort(key=lambda e: e.stat(follow_symlinks=False).st_mtime)
    removed = 0
    for e in entries[: len(entries) - keep]:
        if protect is not None and Path(e.path) == protect:
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        removed += 1
    return removed
