"""The real ALFWorld engine (TextWorld's PDDL env + alfworld's wrappers), made deterministic.

`start_engine(game_file)` builds exactly what `AlfredTWEnv.init_env` builds per game in train
mode (AlfredDemangler, AlfredInfos, AlfredExpert(handcoded)), minus the gym batching, with
two changes that make episodes reproducible:

* the handcoded expert draws from Python's global `random` (tie breaks, and a random
  admissible command when it would repeat itself). `EngineSession` runs every engine call
  with the global state swapped for the episode's own `random.Random` state and puts the
  caller's state back afterwards, so the same episode seed gives the same expert, and the
  user's `random` is left alone;
* the expert's state tracker is told "put X to Y" for the TextWorld command "move X to Y"
  (see `_expert_command`; without it the expert loops on pick-two tasks);
* the expert sees the state's facts sorted by (predicate, arguments) (TextWorld builds them
  from sets, whose order can depend on PYTHONHASHSEED), and it never raises: when it gives up the plan
  is empty (`oracle_action()` is then None).

alfworld and textworld are imported here only (lazily, by `arlarena_envs.alfworld`).
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator

from arlarena_envs.errors import ArlArenaError, DataError, MissingDependencyError



def _import_alfworld() -> None:
    """Import alfworld without its import-time side effects on our process.

    `alfworld.info` does `mkdirs($ALFWORLD_DATA or ~/.cache/alfworld)` and then sets
    ALFWORLD_DATA to that folder: with a read-only HOME the import dies with a bare
    PermissionError, and afterwards "ALFWORLD_DATA is unset" can no longer be told apart from a
    folder alfworld made up. We point ALFWORLD_DATA at a folder that exists (the package's own;
    nothing is written there) for the import only, then put the variable back as it was. We use
    none of alfworld's data paths (official.py resolves the data itself)."""
    global textworld, AlfredDemangler, AlfredExpert, AlfredExpertType, AlfredInfos, HandCodedAgentFailed, HandCodedAgentTimeout
    import importlib.util
    import os

    before = os.environ.get("ALFWORLD_DATA")
    spec = importlib.util.find_spec("alfworld")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("arlarena/ALFWorld-v0 needs alfworld and textworld: pip install 'arlarena-envs[alfworld]'")
    if before is None:
        os.environ["ALFWORLD_DATA"] = list(spec.submodule_search_locations)[0]
    try:
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredExpert, AlfredExpertType, AlfredInfos
        from alfworld.agents.expert.handcoded_expert import HandCodedAgentFailed, HandCodedAgentTimeout
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise MissingDependencyError(f"arlarena/ALFWorld-v0 needs alfworld and textworld ({e}): pip install 'arlarena-envs[alfworld]'") from e
    except OSError as e:
        raise DataError(f"alfworld could not start: {e}; set ALFWORLD_DATA to an existing folder") from None
    finally:
        if before is None:
            os.environ.pop("ALFWORLD_DATA", None)
        else:
            os.environ["ALFWORLD_DATA"] = before


_import_alfworld()


EXCLUDED_COMMANDS = frozenset({"help"})  # never admissible in the env (as the paper), so never proposed


def request_infos() -> "textworld.EnvInfos":
    """What we ask the engine for each step (the expert needs facts + admissible commands)."""
    return textworld.EnvInfos(won=True, admissible_commands=True, facts=True, feedback=True, extras=["gamefile", "expert_plan"])


class SafeAlfredExpert(AlfredExpert):
    """AlfredExpert with sorted facts and no exceptions escaping (see module docstring)."""

    def __init__(self, env=None, expert_type=AlfredExpertType.HANDCODED, max_steps: int = 200):
        super().__init__(env=env, expert_type=expert_type)
        self.expert_max_steps = max_steps
        self.expert_failed = False

    def load(self, gamefile):
        super().load(gamefile)
        self._handcoded_expert.max_steps = self.expert_max_steps

    def reset(self):
        self.expert_failed = False
        return super().reset()

    def _gather_infos(self):
        # AlfredExpert._gather_infos, but a failing/timed-out expert gives an empty plan
        sort_facts(self.state)
        self.state["extra.expert_plan"] = ["look"]
        if self.expert_failed:
            self.state["extra.expert_plan"] = []
            return
        try:
            if not self.prev_command:
                self._handcoded_expert.observe(self.state["feedback"])
            else:
                # the expert falls back to random.choice(admissible_commands) when it would repeat
                # itself: show it the env's list (no 'help', which the env never executes)
                admissible = self.state["admissible_commands"]
                self.state["admissible_commands"] = [c for c in admissible if c not in EXCLUDED_COMMANDS]
                try:
                    nxt = self._handcoded_expert.act(self.state, 0, self.state["won"], _expert_command(self.prev_command))
                finally:
                    self.state["admissible_commands"] = admissible
                if nxt in admissible and nxt not in EXCLUDED_COMMANDS:
                    self.state["extra.expert_plan"] = [nxt]
        except (HandCodedAgentTimeout, HandCodedAgentFailed):
            self.expert_failed = True
            self.state["extra.expert_plan"] = []


def sort_facts(state: Any) -> list[tuple[str, ...]]:
    """Sort `state["facts"]` by (predicate, argument names) and keep those keys in
    `state["_fact_keys"]` (the env's state hash uses them). Idempotent; returns the keys."""
    if "_fact_keys" not in state:
        facts = list(state["facts"])
        keys = [(f.name, *(v.name for v in f.arguments)) for f in facts]
        order = sorted(range(len(facts)), key=keys.__getitem__)
        state["facts"] = [facts[i] for i in order]
        state["_fact_keys"] = [keys[i] for i in order]
    return state["_fact_keys"]


def _expert_command(command: str) -> str:
    """The command as the expert's state tracker expects it.

    The handcoded expert was written for THOR, where placing is "put X in Y"; its tracker only
    pops the inventory and blacklists the placed object on a command containing "put". In
    TextWorld the command is "move X to Y", so after the first placement of a pick-two task the
    expert believes it still holds the object and loops until the step cap. We show it "put"."""
    return "put " + command[5:] if command.startswith("move ") else command


_ORIGINAL_PARSE = None


def install_textgen_cache(enable: bool = True) -> None:
    """Memoise TextWorld's PDDL text-grammar parser (process-wide; `enable=False` undoes it).

    Every step, TextWorld derives the text of each admissible command from its template, and
    each derivation first parses the template string with tatsu (about 60% of a step). The
    parse is a pure function of (text, rule): we cache the parsed symbols and hand out deep
    copies (derivation mutates them), so the output is identical and a step is ~2x cheaper."""
    global _ORIGINAL_PARSE
    import copy
    import functools

    import textworld.envs.pddl.textgen as textgen

    if not enable:
        if _ORIGINAL_PARSE is not None:
            textgen._parse_and_convert = _ORIGINAL_PARSE
            _ORIGINAL_PARSE = None
        return
    if _ORIGINAL_PARSE is not None:
        return
    original = textgen._parse_and_convert

    @functools.lru_cache(maxsize=16384)
    def _parsed(text: str, rule_name: str | None, trace: bool) -> Any:
        return original(text, rule_name=rule_name, trace=trace)

    def cached_parse_and_convert(text, rule_name=None, trace=False, **kwargs):
        if kwargs or not isinstance(text, str):
            return original(text, rule_name=rule_name, trace=trace, **kwargs)
        return copy.deepcopy(_parsed(text, rule_name, bool(trace)))

    _ORIGINAL_PARSE = original
    textgen._parse_and_convert = cached_parse_and_convert


def start_engine(
    game_file: str, *, expert: bool = True, safe_expert: bool = True, expert_max_steps: int = 200, fast_textgen: bool = False
) -> Any:
    """A TextWorld env for one ALFWorld game file with alfworld's wrappers (not yet reset).

    expert=True attaches the handcoded expert (alfworld does so in train mode only);
    safe_expert=False uses alfworld's own AlfredExpert unchanged (the raw-engine baseline);
    fast_textgen=True installs `install_textgen_cache` (same text, cheaper steps)."""
    if fast_textgen:
        install_textgen_cache()
    wrappers: list[Any] = [AlfredDemangler(shuffle=False), AlfredInfos]
    infos = request_infos()
    if expert:
        wrappers.append(SafeAlfredExpert(AlfredExpertType.HANDCODED, max_steps=expert_max_steps) if safe_expert else AlfredExpert(AlfredExpertType.HANDCODED))
    else:
        infos.extras = ["gamefile"]
    return textworld.start(game_file, request_infos=infos, wrappers=wrappers)


@contextlib.contextmanager
def _keep_argv() -> Iterator[None]:
    """fast-downward's `pddl2sas` (run by TextWorld on every PDDL reset) assigns sys.argv to
    ["translate.py", "domain", "task"]; the caller's argv is put back afterwards."""
    argv, items = sys.argv, list(sys.argv)
    try:
        yield
    finally:
        sys.argv = argv  # the caller's own list object, with its own items
        argv[:] = items


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""


# The expert's `random` swap below touches interpreter-wide state, so engine calls from
# several threads are serialised (they hold the GIL anyway: the engine is pure Python).
_ENGINE_LOCK = threading.RLock()


class EngineSession:
    """One engine (one TextWorld env + wrappers, one copy of fast-downward's library) that
    loads games on demand; reset/step run with the episode's private `random` state.

    Loading another game reuses the same engine (`env.load`), so a long run does not map a
    new copy of libdownward.so per game (TextWorld copies it per env instance)."""

    def __init__(self, *, expert: bool = True, expert_max_steps: int = 200, fast_textgen: bool = True):
        self.expert = expert
        self.expert_max_steps = expert_max_steps
        self.fast_textgen = fast_textgen
        self.env: Any = None
        self.game_file: str | None = None
        self.task_type = ""
        self._rng_state: Any = random.Random(0).getstate()

    def load(self, game_file: str) -> None:
        """Load a game (a no-op if it is the loaded one)."""
        if game_file == self.game_file:
            return
        traj = Path(game_file).parent / "traj_data.json"
        try:
            task_type = str(json.loads(traj.read_text(encoding="utf-8"))["task_type"])
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"cannot read the task type from {traj}: {e}; every ALFWorld game needs its traj_data.json") from e
        with _ENGINE_LOCK, _keep_argv(), warnings.catch_warnings():
            # TextWorld's PddlEnv.load does json.load(open(path)): the file is closed when the
            # object is freed, right away, with a ResourceWarning we do not pass on
            warnings.simplefilter("ignore", ResourceWarning)
            self.game_file = None
            try:
                if self.env is None:
                    self.env = start_engine(
                        game_file, expert=self.expert, expert_max_steps=self.expert_max_steps, fast_textgen=self.fast_textgen
                    )
                else:
                    self.env.load(game_file)
            except (ArlArenaError, MemoryError, RecursionError):
                raise
            except (Exception, SystemExit) as e:  # the engine's parsers raise many types (fast-downward: SystemExit)
                raise DataError(f"the ALFWorld engine cannot load {game_file}: {type(e).__name__}: {_first_line(e)}") from e
        self.game_file, self.task_type = game_file, task_type

    @property
    def expert_failed(self) -> bool:
        """True once the handcoded expert gave up in this episode."""
        return bool(getattr(self._expert_wrapper(), "expert_failed", False))

    def _expert_wrapper(self) -> Any:
        env = self.env
        while env is not None:
            if isinstance(env, SafeAlfredExpert):
                return env
            env = getattr(env, "_wrapped_env", None)
        return None

    def _call(self, fn, *args):
        with _ENGINE_LOCK, _keep_argv():
            saved = random.getstate()
            random.setstate(self._rng_state)
            try:
                return fn(*args)
            finally:
                self._rng_state = random.getstate()
                random.setstate(saved)

    def reset(self, seed: int) -> Any:
        """Reset the loaded game; the expert's randomness comes from `random.Random(seed)`.
        The engine parses the game's PDDL here (fast-downward's translator): a malformed game
        is a DataError naming its file."""
        self._rng_state = random.Random(seed).getstate()
        try:
            return self._call(self.env.reset)
        except (ArlArenaError, MemoryError, RecursionError):
            raise
        except (Exception, SystemExit) as e:  # fast-downward's translator exits on malformed PDDL
            raise DataError(f"the ALFWorld engine cannot start {self.game_file}: {type(e).__name__}: {_first_line(e)}") from e

    def step(self, command: str) -> tuple[Any, float, bool]:
        return self._call(self.env.step, command)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env, self.game_file = None, None
