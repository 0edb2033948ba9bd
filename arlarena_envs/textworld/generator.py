"""TextWorld games from TextWorld's own generator, deterministic from a seed, cached by seed.

`game_for(seed, preset)` makes (once) and compiles `<cache>/textworld/<preset>/seed-<seed>/game.z8`
with `textworld.generator.make_game` + `compile_game` (what `tw-make custom` does, offline;
the Inform 7 compiler ships inside the textworld wheel). The same seed gives byte-identical
files in any process. Each game's checksum is the sha256 of its canonical game JSON
(`Game.serialize()`), pinned for a few seeds in registry/TextWorld-v0.yaml.

textworld is imported inside the functions (the extra `textworld`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from arlarena_envs.cache_dir import touch
from arlarena_envs.errors import ConfigError, DataError

# difficulty presets: tw-make custom's --world-size / --nb-objects / --quest-length
PRESETS: dict[str, dict[str, int]] = {
    "easy": {"nb_rooms": 1, "nb_objects": 4, "quest_length": 2},
    "medium": {"nb_rooms": 3, "nb_objects": 8, "quest_length": 4},
    "hard": {"nb_rooms": 6, "nb_objects": 14, "quest_length": 6},
}


MAX_CACHED_GAMES = 5000  # compiled games kept per preset in the cache; older ones are evicted (LRU)

# TextWorld parses its game logic with one module-global tatsu parser (textworld.logic._PARSER),
# which is not thread-safe: two threads generating or loading games at once corrupt its rule stack
# ("IndexError: pop from empty list"). The env server resets sessions in worker threads, so every
# call into TextWorld that parses (make_game, compile_game, start/load/reset) holds this lock.
TEXTWORLD_LOCK = threading.RLock()


def default_cache_dir() -> Path:
    """$ARLARENA_CACHE/textworld, else ~/.cache/arlarena/textworld, else a temp folder (cache_dir.py)."""
    from arlarena_envs.cache_dir import cache_root

    return cache_root("textworld")


_HOME_LOCK = threading.Lock()


@contextlib.contextmanager
def _writable_home(cache: Path) -> Iterator[None]:
    """Inform 7's compiler (`ni`) writes under $HOME and fails, with a generic "compilation error",
    when HOME is read-only or missing (containers). Then compile with HOME set to a folder in the
    cache; otherwise leave the environment alone."""
    home = os.environ.get("HOME", "")
    if home and _can_write(Path(home)):
        yield
        return
    from arlarena_envs.cache_dir import ensure_writable

    with _HOME_LOCK:
        os.environ["HOME"] = str(ensure_writable(cache / ".inform-home", "HOME for the Inform 7 compiler"))
        try:
            yield
        finally:
            if home:
                os.environ["HOME"] = home
            else:
                os.environ.pop("HOME", None)


def _can_write(folder: Path) -> bool:
    """A real probe (os.access says yes to root even on /proc)."""
    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=".arlarena-probe-", dir=folder))
        return True
    except OSError:
        return False


def _options(seed: int, preset: str) -> Any:
    import textworld

    if preset not in PRESETS:
        raise ConfigError(f"unknown TextWorld preset {preset!r}; presets: {sorted(PRESETS)}")
    opts = textworld.GameOptions()
    opts.seeds = int(seed)
    for k, v in PRESETS[preset].items():
        setattr(opts, k, v)
    return opts


def make_game(seed: int, preset: str) -> Any:
    """The textworld.Game of (seed, preset), not compiled (fast enough for checksums)."""
    from textworld.generator import make_game as tw_make_game

    with TEXTWORLD_LOCK:
        return tw_make_game(_options(seed, preset))


def game_digest(game: Any) -> str:
    """sha256 of the game's canonical JSON (`Game.serialize()`, keys sorted), without
    `KB.text_grammars_path`: where textworld is installed says nothing about the game and
    differs between machines and venvs (found by a clean-clone CI run)."""
    data = game.serialize()
    kb = data.get("KB")
    if isinstance(kb, dict):
        data = {**data, "KB": {k: v for k, v in kb.items() if k != "text_grammars_path"}}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


def game_for(seed: int, preset: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the compiled game of (seed, preset), generating and caching it if needed.

    Generation goes to a temporary folder renamed into place, so concurrent processes never
    see half-written games (the loser of a race just uses the winner's identical files)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / preset / f"seed-{int(seed)}"
    z8 = folder / "game.z8"
    if z8.is_file() and (folder / "game.json").is_file():
        touch(folder)
        return z8
    from textworld.generator import CouldNotCompileGameError, compile_game

    from arlarena_envs.cache_dir import ensure_writable, evict_oldest

    opts = _options(seed, preset)
    game = make_game(seed, preset)
    ensure_writable(folder.parent, "TextWorld game cache folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".seed-{seed}-", dir=folder.parent))
    try:
        opts.path = str(tmp / "game.z8")
        opts.force_recompile = True
        try:
            with TEXTWORLD_LOCK, _writable_home(root):
                compile_game(game, opts)
        except (CouldNotCompileGameError, OSError, subprocess.SubprocessError) as e:
            raise DataError(
                f"could not compile TextWorld game seed={seed} preset={preset}: {type(e).__name__}: {e}. "
                "Check that the `textworld` extra is installed completely (it ships the Inform 7 compiler)."
            ) from e
        (tmp / "digest.txt").write_text(game_digest(game) + "\n")
        try:
            os.rename(tmp, folder)
        except OSError as e:
            if not z8.is_file():  # not a lost race with another process: a real error
                raise DataError(f"cannot store the TextWorld game {folder}: {e}; set ARLARENA_CACHE to a writable folder") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    evict_oldest(folder.parent, MAX_CACHED_GAMES, protect=folder)
    return z8
