"""Embedded ALFWorld game generator: ALFWorld-style games written by us, deterministic from a seed.

A game is what `alfworld-download` would give for one trial: a folder
`<root>/<task_type>-<Object>-<Toggle>-<Parent>-<layout>/trial_<seed>/` holding

* `game.tw-pddl`: JSON {pddl_domain, grammar, pddl_problem, solvable, walkthrough}; the domain
  and the grammar are alfworld 0.4.2's own `alfred.pddl` / `alfred.twl2` (the goal sentence is
  written into the grammar as `alfworld-generate` does); the PDDL problem is ours;
* `traj_data.json`: {task_type, pddl_params, scene, ...}, which the handcoded expert reads.

The world: one room of a scene kind (kitchen, bedroom, bathroom, living room) with receptacles
at distinct locations and objects inside them, the placements allowed by ALFRED's
`VAL_RECEPTACLE_OBJECTS`. The six ALFWorld task types use the official goal formulas.
Task `task_id` has type `TASK_TYPES[task_id % 6]` (balanced), everything else is drawn from
`numpy.random.default_rng([GENERATOR_VERSION, task_id])`.

Room layouts: a layout is (scene kind, receptacle counts) drawn from a layout seed. The
in-distribution pool ("seen") has layout seeds 0..LAYOUTS_PER_POOL-1; the out-of-distribution
pool ("unseen") has disjoint layout seeds, bigger rooms (more receptacles, so more search) and
holds out a set of target object classes that seen-pool tasks never ask for.

Pure Python (no alfworld import needed to generate); `write_game` materialises a game on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arlarena_envs.errors import DataError, InvalidArgumentError

GENERATOR_VERSION = 1

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
# the paper's per-task-type success names (reference_code.md §5), keyed by ALFWorld task type
SUCCESS_NAMES = {
    "pick_and_place_simple": "pick_and_place",
    "look_at_obj_in_light": "look_at_obj_in_light",
    "pick_clean_then_place_in_recep": "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep": "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep": "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place": "pick_two_obj_and_place",
}

# goal sentences: alfworld.gen.goal_library templates (copied so generation needs no alfworld)
TEMPLATES = {
    "pick_and_place_simple": ["put a {obj} in {recep}", "put some {obj} on {recep}"],
    "look_at_obj_in_light": ["look at {obj} under the {toggle}", "examine the {obj} with the {toggle}"],
    "pick_clean_then_place_in_recep": ["put a clean {obj} in {recep}", "clean some {obj} and put it in {recep}"],
    "pick_heat_then_place_in_recep": ["put a hot {obj} in {recep}", "heat some {obj} and put it in {recep}"],
    "pick_cool_then_place_in_recep": ["put a cool {obj} in {recep}", "cool some {obj} and put it in {recep}"],
    "pick_two_obj_and_place": ["put two {obj} in {recep}", "find two {obj} and put them in {recep}"],
}

# ALFRED affordances (alfworld.gen.constants, the subset our scenes use)
HEATABLE = {"Apple", "Bread", "Cup", "Egg", "Mug", "Plate", "Potato", "Tomato"}
COOLABLE = {"Apple", "Bowl", "Bread", "Cup", "Egg", "Lettuce", "Mug", "Pan", "Plate", "Pot", "Potato", "Tomato", "WineBottle"}
CLEANABLE = {
    "Apple", "Bowl", "ButterKnife", "Cloth", "Cup", "DishSponge", "Egg", "Fork", "Kettle", "Knife", "Ladle",
    "Lettuce", "Mug", "Pan", "Plate", "Pot", "Potato", "SoapBar", "Spatula", "Spoon", "Tomato",
}
OPENABLE = {"Fridge", "Cabinet", "Microwave", "Drawer", "Safe", "Box"}
RECEPTACLE_OBJECTS = {  # VAL_RECEPTACLE_OBJECTS restricted to the classes below
    "CounterTop": "AlarmClock Apple Book Bowl Bread ButterKnife CD Candle CellPhone Cloth CreditCard Cup DishSponge Egg Fork Kettle KeyChain Knife Ladle Laptop Lettuce Mug Newspaper Pan Pen Pencil PepperShaker Plate Pot Potato RemoteControl SaltShaker SoapBar SoapBottle Spatula Spoon SprayBottle Statue TissueBox ToiletPaper Tomato Vase Watch WineBottle",
    "DiningTable": "AlarmClock Apple Book Bowl Bread ButterKnife CD Candle CellPhone Cloth CreditCard Cup DishSponge Egg Fork Kettle KeyChain Knife Ladle Laptop Lettuce Mug Newspaper Pan Pen Pencil PepperShaker Plate Pot Potato RemoteControl SaltShaker SoapBar SoapBottle Spatula Spoon SprayBottle Statue TissueBox ToiletPaper Tomato Vase Watch WineBottle",
    "CoffeeTable": "AlarmClock Apple Book Bowl Bread ButterKnife CD Candle CellPhone Cloth CreditCard Cup DishSponge Egg Fork Kettle KeyChain Knife Ladle Laptop Lettuce Mug Newspaper Pan Pen Pencil PepperShaker Plate Pot Potato RemoteControl SaltShaker SoapBar SoapBottle Spatula Spoon SprayBottle Statue TissueBox ToiletPaper Tomato Vase Watch WineBottle",
    "SideTable": "AlarmClock Apple Book Bowl Bread ButterKnife CD Candle CellPhone Cloth CreditCard Cup DishSponge Egg Fork Kettle KeyChain Knife Ladle Laptop Lettuce Mug Newspaper Pan Pen Pencil PepperShaker Plate Pot Potato RemoteControl SaltShaker SoapBar SoapBottle Spatula Spoon SprayBottle Statue TissueBox ToiletPaper Tomato Vase Watch WineBottle",
    "Cabinet": "Book Bowl CD Candle Cloth Cup DishSponge Kettle Ladle Mug Newspaper Pan PepperShaker Plate Pot SaltShaker SoapBar SoapBottle SprayBottle TissueBox ToiletPaper Vase WineBottle",
    "Drawer": "Book ButterKnife CD Candle CellPhone Cloth CreditCard DishSponge Fork KeyChain Knife Ladle Newspaper Pen Pencil PepperShaker RemoteControl SaltShaker SoapBar SoapBottle Spatula Spoon SprayBottle TissueBox ToiletPaper Watch",
    "Shelf": "AlarmClock Book Bowl CD Candle CellPhone Cloth CreditCard Cup DishSponge Kettle KeyChain Mug Newspaper Pen Pencil PepperShaker Plate Pot RemoteControl SaltShaker SoapBar SoapBottle SprayBottle Statue TissueBox ToiletPaper Vase Watch WineBottle",
    "Fridge": "Apple Bowl Bread Cup Egg Lettuce Mug Pan Plate Pot Potato Tomato WineBottle",
    "Microwave": "Apple Bowl Bread Cup Egg Mug Plate Potato Tomato",
    "SinkBasin": "Apple Bowl ButterKnife Cloth Cup DishSponge Egg Fork Kettle Knife Ladle Lettuce Mug Pan Plate Pot Potato SoapBar Spatula Spoon Tomato",
    "StoveBurner": "Kettle Pan Pot",
    "CoffeeMachine": "Mug",
    "GarbageCan": "Apple Bread CD Cloth DishSponge Egg Lettuce Newspaper Pen Pencil Potato SoapBar SoapBottle SprayBottle TissueBox ToiletPaper Tomato WineBottle",
    "Desk": "AlarmClock BasketBall Book Bowl CD Candle CellPhone Cloth CreditCard Cup KeyChain Laptop Mug Newspaper Pen Pencil Plate RemoteControl SoapBottle SprayBottle Statue TennisRacket TissueBox ToiletPaper Vase Watch WineBottle",
    "Dresser": "AlarmClock BasketBall Book Bowl CD Candle CellPhone Cloth CreditCard Cup KeyChain Laptop Mug Newspaper Pen Pencil Plate RemoteControl SprayBottle Statue TennisRacket TissueBox ToiletPaper Vase Watch WineBottle",
    "Bed": "BaseballBat BasketBall Book CellPhone Laptop Newspaper Pillow TennisRacket",
    "Safe": "CD CellPhone CreditCard KeyChain Statue Vase Watch",
    "Sofa": "BasketBall Book CellPhone Cloth CreditCard KeyChain Laptop Newspaper Pillow RemoteControl",
    "ArmChair": "BasketBall Book CellPhone Cloth CreditCard KeyChain Laptop Newspaper Pillow RemoteControl",
    "Ottoman": "BasketBall Book CellPhone Cloth CreditCard KeyChain Laptop Newspaper Pillow RemoteControl",
    "Toilet": "Candle Cloth DishSponge Newspaper SoapBar SoapBottle SprayBottle TissueBox ToiletPaper",
    "ToiletPaperHanger": "ToiletPaper",
    "BathtubBasin": "Cloth DishSponge SoapBar",
    "Cart": "Candle Cloth DishSponge Mug SoapBar SoapBottle SprayBottle Statue TissueBox ToiletPaper Vase",
}
CAN_CONTAIN = {r: frozenset(v.split()) for r, v in RECEPTACLE_OBJECTS.items()}
NOT_PICKUPABLE = {"DeskLamp"}

# scene kind -> receptacle count ranges (seen pool) and the object classes that may appear
SCENES: dict[str, dict[str, Any]] = {
    "kitchen": {
        "receptacles": {"CounterTop": (1, 2), "Cabinet": (2, 5), "Drawer": (1, 3), "Fridge": (1, 1), "Microwave": (1, 1),
                        "SinkBasin": (1, 1), "StoveBurner": (1, 3), "DiningTable": (0, 1), "GarbageCan": (1, 1),
                        "CoffeeMachine": (1, 1), "Shelf": (0, 2)},
        "objects": ["Apple", "Bread", "Egg", "Potato", "Tomato", "Lettuce", "Mug", "Cup", "Plate", "Bowl", "Pan", "Pot",
                    "Kettle", "Knife", "ButterKnife", "Fork", "Spoon", "Spatula", "Ladle", "DishSponge", "SaltShaker",
                    "PepperShaker", "SoapBottle", "WineBottle"],
        "lamp": False,
    },
    "bedroom": {
        "receptacles": {"Bed": (1, 1), "Desk": (0, 1), "SideTable": (1, 2), "Dresser": (0, 1), "Drawer": (2, 4),
                        "Shelf": (0, 3), "GarbageCan": (1, 1), "Safe": (0, 1)},
        "objects": ["AlarmClock", "Book", "CD", "CellPhone", "CreditCard", "KeyChain", "Laptop", "Pen", "Pencil", "Pillow",
                    "BaseballBat", "BasketBall", "TennisRacket", "Mug", "Bowl", "Watch", "Statue"],
        "lamp": True,
    },
    "bathroom": {
        "receptacles": {"Toilet": (1, 1), "SinkBasin": (1, 2), "BathtubBasin": (0, 1), "Cabinet": (1, 4), "CounterTop": (1, 1),
                        "Drawer": (0, 3), "GarbageCan": (1, 1), "ToiletPaperHanger": (1, 1), "Shelf": (0, 2), "Cart": (0, 1)},
        "objects": ["SoapBar", "SoapBottle", "SprayBottle", "ToiletPaper", "Candle", "Cloth", "DishSponge", "TissueBox"],
        "lamp": False,
    },
    "livingroom": {
        "receptacles": {"Sofa": (1, 1), "ArmChair": (0, 2), "CoffeeTable": (1, 2), "SideTable": (1, 2), "Drawer": (1, 4),
                        "Cabinet": (0, 3), "Shelf": (0, 3), "Dresser": (0, 1), "GarbageCan": (1, 1), "Ottoman": (0, 1)},
        "objects": ["Book", "CellPhone", "CreditCard", "KeyChain", "Laptop", "Newspaper", "Pillow", "RemoteControl",
                    "Statue", "Vase", "Watch", "TissueBox", "Candle"],
        "lamp": True,
    },
}
LAMP_HOSTS = ("Desk", "SideTable", "Dresser")
# the appliance each task needs, and receptacles never used as a goal parent for that task
APPLIANCE = {"pick_clean_then_place_in_recep": "SinkBasin", "pick_heat_then_place_in_recep": "Microwave",
             "pick_cool_then_place_in_recep": "Fridge"}
PROPERTY = {"pick_clean_then_place_in_recep": CLEANABLE, "pick_heat_then_place_in_recep": HEATABLE,
            "pick_cool_then_place_in_recep": COOLABLE}
OPPOSITE = {"pick_heat_then_place_in_recep": "Fridge", "pick_cool_then_place_in_recep": "Microwave"}
BAD_PARENTS = {"GarbageCan", "SinkBasin", "BathtubBasin", "Microwave", "StoveBurner", "ToiletPaperHanger", "CoffeeMachine"}
SCENES_FOR_TASK = {
    "pick_and_place_simple": ("kitchen", "bedroom", "bathroom", "livingroom"),
    "pick_two_obj_and_place": ("kitchen", "bedroom", "bathroom", "livingroom"),
    "look_at_obj_in_light": ("bedroom", "livingroom"),
    "pick_clean_then_place_in_recep": ("kitchen", "bathroom"),
    "pick_heat_then_place_in_recep": ("kitchen",),
    "pick_cool_then_place_in_recep": ("kitchen",),
}
# object classes that only the unseen (OOD) pool uses as task targets
HELD_OUT_TARGETS = frozenset({"Potato", "Spatula", "Pencil", "Watch", "Candle", "TissueBox", "Vase", "Pot"})
POOLS = ("seen", "unseen")
LAYOUTS_PER_POOL = 40
UNSEEN_LAYOUT_OFFSET = 100_000
UNSEEN_EXTRA_RECEPTACLES = 2  # unseen rooms get up to this many more of each multi-instance receptacle


@dataclass
class GeneratedGame:
    """One generated game: the two files' contents plus what the env reports about it."""

    task_id: int
    pool: str
    task_type: str
    scene: str
    layout_seed: int
    object_target: str
    parent_target: str
    toggle_target: str
    goal: str
    walkthrough: list[str]
    game: dict[str, Any]
    traj_data: dict[str, Any]
    folder: str = field(default="")

    def files(self) -> dict[str, bytes]:
        return {
            "game.tw-pddl": json.dumps(self.game, indent=1, sort_keys=True).encode("utf-8"),
            "traj_data.json": json.dumps(self.traj_data, indent=1, sort_keys=True).encode("utf-8"),
        }

    def sha256(self) -> str:
        """sha256 over both files (name, NUL, bytes, NUL; names sorted): the game's checksum."""
        h = hashlib.sha256()
        for name, data in sorted(self.files().items()):
            h.update(name.encode() + b"\0" + data + b"\0")
        return h.hexdigest()


# ---------------------------------------------------------------------------------- ids


def _num(v: float) -> str:
    """ALFRED id number: +01.58 -> '_plus_01_dot_58', -0.07 -> '_minus_00_dot_07'."""
    sign = "_minus_" if v < 0 else "_plus_"
    a = abs(v)
    return f"{sign}{int(a):02d}_dot_{int(round((a - int(a)) * 100)) % 100:02d}"


def _coords_id(cls: str, xyz: tuple[float, float, float], suffix: str = "") -> str:
    return f"{cls}_bar_" + "_bar_".join(_num(c) for c in xyz) + suffix


def _loc_id(x: int, z: int, rot: int, hor: int) -> str:
    def n(v: int) -> str:
        return f"_minus_{-v}" if v < 0 else str(v)

    return f"loc_bar_{n(x)}_bar_{n(z)}_bar_{rot}_bar_{n(hor)}"


def _display_names(ids: list[str]) -> dict[str, str]:
    """What alfworld's Demangler shows for each id: '<class lowercased> <k>'.

    Demangler: ids sorted; per class the numbers 1..count are popped from the end, so the
    first id (sorted) gets the highest number. Basins: 'Sink_bar_.._bar_SinkBasin' -> 'sinkbasin'."""
    # PDDL names are case-insensitive: the engine lowercases ids before the Demangler sees them
    low = {i: i.lower() for i in ids}
    counts: dict[str, int] = {}
    for i in sorted(low.values()):
        name = i.split("_bar_", 1)[0] + ("basin" if "basin" in i else "")
        counts[name] = counts.get(name, 0) + 1
    pools = {name: list(range(1, c + 1)) for name, c in counts.items()}
    shown = {}
    for i in sorted(low.values()):
        name = i.split("_bar_", 1)[0] + ("basin" if "basin" in i else "")
        shown[i] = f"{name} {pools[name].pop()}"
    return {i: shown[low[i]] for i in ids}


# ---------------------------------------------------------------------------------- layout


def _layout(pool: str, layout_seed: int, scene: str) -> dict[str, int]:
    """Receptacle class -> count for one room layout (a pure function of its seed)."""
    rng = np.random.default_rng([GENERATOR_VERSION, 7, layout_seed, POOLS.index(pool), list(SCENES).index(scene)])
    counts = {}
    for cls, (lo, hi) in SCENES[scene]["receptacles"].items():
        if pool == "unseen" and hi > 1:
            hi += UNSEEN_EXTRA_RECEPTACLES
            lo = max(lo, 1)
        counts[cls] = int(rng.integers(lo, hi + 1))
    if SCENES[scene]["lamp"] and not any(counts.get(h, 0) for h in LAMP_HOSTS):
        counts["SideTable"] = 1
    return counts


def _pick(rng: np.random.Generator, seq: list | tuple) -> Any:
    return seq[int(rng.integers(len(seq)))]


class _NoTask(Exception):
    """This (scene, layout) cannot host the task; the generator draws again."""


def generate_game(task_id: int, pool: str = "seen") -> GeneratedGame:
    """The game of task `task_id` in layout pool `pool` ("seen" or "unseen"); deterministic."""
    if pool not in POOLS:
        raise InvalidArgumentError(f"pool must be one of {POOLS}, got {pool!r}")
    if task_id < 0:
        raise InvalidArgumentError(f"task_id must be >= 0, got {task_id}")
    task_type = TASK_TYPES[task_id % len(TASK_TYPES)]
    rng = np.random.default_rng([GENERATOR_VERSION, POOLS.index(pool), task_id])
    for _attempt in range(100):
        scene = _pick(rng, SCENES_FOR_TASK[task_type])
        layout_seed = int(rng.integers(LAYOUTS_PER_POOL)) + (UNSEEN_LAYOUT_OFFSET if pool == "unseen" else 0)
        try:
            return _build(task_id, pool, task_type, scene, layout_seed, rng)
        except _NoTask:
            continue
    raise DataError(f"could not generate task {task_id} in pool {pool!r} (generator bug)")  # pragma: no cover


def _build(task_id: int, pool: str, task_type: str, scene: str, layout_seed: int, rng: np.random.Generator) -> GeneratedGame:
    counts = _layout(pool, layout_seed, scene)
    recep_classes = [c for c in counts for _ in range(counts[c])]
    objects = SCENES[scene]["objects"]

    # ---- choose the goal
    def holders(obj: str) -> list[str]:
        return sorted({c for c in counts if counts[c] and obj in CAN_CONTAIN[c]})

    candidates = []
    for obj in objects:
        if (obj in HELD_OUT_TARGETS) != (pool == "unseen"):
            continue
        if task_type in PROPERTY and obj not in PROPERTY[task_type]:
            continue
        if task_type in APPLIANCE and not counts.get(APPLIANCE[task_type]):
            continue
        if not holders(obj):
            continue
        candidates.append(obj)
    if not candidates:
        raise _NoTask
    obj_t = _pick(rng, sorted(candidates))
    toggle_t, parent_t = "", ""
    if task_type == "look_at_obj_in_light":
        toggle_t = "DeskLamp"
    else:
        parents = [c for c in holders(obj_t) if c not in BAD_PARENTS and c not in (APPLIANCE.get(task_type), OPPOSITE.get(task_type))]
        if task_type == "pick_two_obj_and_place":
            # pick-two parents are open-top in generator v1: alfworld's handcoded expert looped
            # on pick-two games with an openable parent (found before engine.py's move/put fix,
            # which removed the loop we traced); lifting this changes the games: a new version
            parents = [p for p in parents if p not in OPENABLE]
        # the object must start somewhere else than the goal parent class
        parents = [p for p in parents if any(h != p for h in holders(obj_t))]
        if not parents:
            raise _NoTask
        parent_t = _pick(rng, parents)

    # ---- receptacles: ids, locations
    used_locs: set[tuple[int, int]] = set()

    def new_loc() -> str:
        while True:
            x, z = int(rng.integers(-12, 13)), int(rng.integers(-12, 13))
            if (x, z) not in used_locs:
                used_locs.add((x, z))
                return _loc_id(x, z, int(rng.integers(4)), int(_pick(rng, (0, 15, 30, 45, 60))))

    def xyz() -> tuple[float, float, float]:
        return tuple(round(float(v), 2) for v in rng.uniform(-3.0, 3.0, size=3))  # type: ignore[return-value]

    receptacles: list[tuple[str, str, str]] = []  # (id, class, location)
    for cls in recep_classes:
        rid = _coords_id("Sink" if cls == "SinkBasin" else "Bathtub" if cls == "BathtubBasin" else cls, xyz(),
                         "_bar_" + cls if cls in ("SinkBasin", "BathtubBasin") else "")
        receptacles.append((rid, cls, new_loc()))
    start_loc = new_loc()
    by_class: dict[str, list[tuple[str, str, str]]] = {}
    for r in receptacles:
        by_class.setdefault(r[1], []).append(r)

    # ---- objects: the target(s) first, then distractors
    placed: list[tuple[str, str, tuple[str, str, str]]] = []  # (id, class, receptacle)

    def place(obj: str, allowed: list[str]) -> None:
        hosts = [r for c in allowed for r in by_class.get(c, [])]
        if not hosts:
            raise _NoTask
        host = _pick(rng, hosts)
        placed.append((_coords_id(obj, xyz()), obj, host))

    n_target = 2 if task_type == "pick_two_obj_and_place" else int(rng.integers(1, 3))
    start_hosts = [h for h in holders(obj_t) if h != parent_t and h not in (APPLIANCE.get(task_type),)]
    if not start_hosts:
        raise _NoTask
    for _ in range(n_target):
        place(obj_t, start_hosts)
    if toggle_t:
        lamp_host = _pick(rng, [c for c in LAMP_HOSTS if counts.get(c)])
        place(toggle_t, [lamp_host])
    n_distract = int(rng.integers(len(receptacles), 2 * len(receptacles) + 1))
    others = [o for o in objects if o != obj_t]
    for _ in range(n_distract):
        o = _pick(rng, others)
        hs = holders(o)
        if hs:
            place(o, hs)

    # ---- names as the engine will show them, and a walkthrough (our plan, checked by tests)
    names = _display_names([r[0] for r in receptacles] + [p[0] for p in placed])
    walkthrough = _walkthrough(task_type, obj_t, parent_t, toggle_t, placed, by_class, names)

    goal = _pick(rng, TEMPLATES[task_type]).format(obj=obj_t.lower(), recep=parent_t.lower(), toggle=toggle_t.lower())
    problem = _problem(task_id, receptacles, placed, start_loc, _goal_pddl(task_type, obj_t, parent_t, toggle_t))
    game = {
        "pddl_domain": _logic_text("alfred.pddl"),
        "grammar": _logic_text("alfred.twl2").replace("UNKNOWN GOAL", goal),
        "pddl_problem": problem,
        "solvable": True,
        "walkthrough": walkthrough,
    }
    traj = {
        "task_type": task_type,
        "task_id": f"arlarena_gen_v{GENERATOR_VERSION}_{pool}_{task_id}",
        "pddl_params": {"object_target": obj_t, "parent_target": parent_t, "toggle_target": toggle_t,
                        "mrecep_target": "", "object_sliced": False},
        "scene": {"scene_kind": scene, "layout_seed": layout_seed, "pool": pool, "floor_plan": f"{scene}_{layout_seed}"},
        "generator": {"name": "arlarena_envs.alfworld.generator", "version": GENERATOR_VERSION},
        "turk_annotations": {"anns": [{"task_desc": goal}]},
    }
    folder = f"{task_type}-{obj_t}-{toggle_t or 'None'}-{parent_t or 'None'}-{layout_seed}/trial_{pool}_{task_id:07d}"
    return GeneratedGame(task_id, pool, task_type, scene, layout_seed, obj_t, parent_t, toggle_t, goal + ".",
                         walkthrough, game, traj, folder)


def _walkthrough(task_type, obj_t, parent_t, toggle_t, placed, by_class, names) -> list[str]:
    """A winning command list (not the expert's): fetch, transform, deliver."""
    cmds: list[str] = []
    opened: set[str] = set()
    at: list[str | None] = [None]

    def go(rid: str) -> None:
        if at[0] != rid:
            cmds.append(f"go to {names[rid]}")
            at[0] = rid

    def open_if(rid: str, cls: str) -> None:
        if cls in OPENABLE and rid not in opened:
            cmds.append(f"open {names[rid]}")
            opened.add(rid)

    targets = [p for p in placed if p[1] == obj_t]
    n = 2 if task_type == "pick_two_obj_and_place" else 1
    parent = by_class[parent_t][0] if parent_t else None
    for oid, _cls, (rid, rcls, _loc) in targets[:n]:
        go(rid)
        open_if(rid, rcls)
        cmds.append(f"take {names[oid]} from {names[rid]}")
        if task_type in APPLIANCE:
            app = by_class[APPLIANCE[task_type]][0]
            go(app[0])
            verb = {"SinkBasin": "clean", "Microwave": "heat", "Fridge": "cool"}[app[1]]
            cmds.append(f"{verb} {names[oid]} with {names[app[0]]}")
        if task_type == "look_at_obj_in_light":
            lamp = next(p for p in placed if p[1] == toggle_t)
            go(lamp[2][0])
            cmds.append(f"use {names[lamp[0]]}")
            continue
        assert parent is not None
        go(parent[0])
        open_if(parent[0], parent[1])
        cmds.append(f"move {names[oid]} to {names[parent[0]]}")
    return cmds


def _goal_pddl(task_type: str, obj: str, parent: str, toggle: str) -> str:
    """The official ALFWorld goal formula of each task type."""
    if task_type == "pick_and_place_simple":
        body = f"(inReceptacle ?o ?r) (objectType ?o {obj}Type) (receptacleType ?r {parent}Type)"
        return f"(exists (?r - receptacle) (exists (?o - object) (and {body})))"
    if task_type in PROPERTY:
        prop, state = {"pick_clean_then_place_in_recep": ("cleanable", "isClean"),
                       "pick_heat_then_place_in_recep": ("heatable", "isHot"),
                       "pick_cool_then_place_in_recep": ("coolable", "isCool")}[task_type]
        body = f"({prop} ?o) (objectType ?o {obj}Type) (receptacleType ?r {parent}Type) ({state} ?o) (inReceptacle ?o ?r)"
        return f"(exists (?r - receptacle) (exists (?o - object) (and {body})))"
    if task_type == "look_at_obj_in_light":
        return (
            f"(and (exists (?ot - object ?r - receptacle ?a - agent ?l - location) (and (objectType ?ot {toggle}Type)"
            " (toggleable ?ot) (isToggled ?ot) (receptacleAtLocation ?r ?l) (atLocation ?a ?l) (inReceptacle ?ot ?r)))"
            f" (exists (?o - object ?a - agent) (and (objectType ?o {obj}Type) (holds ?a ?o))))"
        )
    if task_type == "pick_two_obj_and_place":
        return (
            f"(exists (?r - receptacle) (exists (?o1 - object) (and (objectType ?o1 {obj}Type) (receptacleType ?r {parent}Type)"
            f" (inReceptacle ?o1 ?r) (exists (?o2 - object) (and (not (= ?o1 ?o2)) (objectType ?o2 {obj}Type)"
            f" (receptacleType ?r {parent}Type) (inReceptacle ?o2 ?r))))))"
        )
    raise InvalidArgumentError(f"unknown task type {task_type!r}")


def _problem(task_id, receptacles, placed, start_loc, goal) -> str:
    obj_classes = sorted({p[1] for p in placed})
    rec_classes = sorted({r[1] for r in receptacles})
    locs = sorted({r[2] for r in receptacles} | {start_loc})
    objs = ["agent1 - agent"]
    objs += [f"{c}Type - otype" for c in obj_classes]
    objs += [f"{c}Type - rtype" for c in rec_classes]
    objs += [f"{p[0]} - object" for p in sorted(placed)]
    objs += [f"{r[0]} - receptacle" for r in sorted(receptacles)]
    objs += [f"{loc} - location" for loc in locs]
    init = [f"(atLocation agent1 {start_loc})"]
    for rid, cls, loc in sorted(receptacles):
        init.append(f"(receptacleType {rid} {cls}Type)")
        init.append(f"(receptacleAtLocation {rid} {loc})")
        if cls in OPENABLE:
            init.append(f"(openable {rid})")
    for rc in rec_classes:
        for oc in obj_classes:
            if oc in CAN_CONTAIN.get(rc, ()):
                init.append(f"(canContain {rc}Type {oc}Type)")
    for oid, cls, (rid, _rcls, loc) in sorted(placed):
        init.append(f"(objectType {oid} {cls}Type)")
        init.append(f"(inReceptacle {oid} {rid})")
        init.append(f"(objectAtLocation {oid} {loc})")
        if cls not in NOT_PICKUPABLE:
            init.append(f"(pickupable {oid})")
        if cls in HEATABLE:
            init.append(f"(heatable {oid})")
        if cls in COOLABLE:
            init.append(f"(coolable {oid})")
        if cls in CLEANABLE:
            init.append(f"(cleanable {oid})")
        if cls == "DeskLamp":
            init.append(f"(toggleable {oid})")
    nl = "\n        "
    return (
        f"\n(define (problem arlarena_gen_{task_id})\n(:domain alfred)\n(:objects\n        {nl.join(objs)}\n        )\n"
        f"(:init\n        {nl.join(init)}\n        )\n(:goal\n        {goal}\n        )\n)\n"
    )


_LOGIC_CACHE: dict[str, str] = {}


def _logic_text(name: str) -> str:
    """alfworld 0.4.2's logic files (alfred.pddl, alfred.twl2), read from the installed package."""
    if name not in _LOGIC_CACHE:
        import importlib.util

        spec = importlib.util.find_spec("alfworld")
        if spec is None or not spec.submodule_search_locations:
            from arlarena_envs.errors import MissingDependencyError

            raise MissingDependencyError("ALFWorld games need alfworld's logic files: pip install 'arlarena-envs[alfworld]'")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
        _LOGIC_CACHE[name] = path.read_text(encoding="utf-8")
    return _LOGIC_CACHE[name]


# ---------------------------------------------------------------------------------- cache


MAX_CACHED_GAMES = 5000  # task folders kept per pool in the cache; older ones are evicted (LRU)


def default_cache_dir() -> Path:
    """$ARLARENA_CACHE/alfworld, else ~/.cache/arlarena/alfworld, else a temp folder (cache_dir.py)."""
    from arlarena_envs.cache_dir import cache_root

    return cache_root("alfworld")


def write_game(game: GeneratedGame, root: str | Path, max_cached: int = MAX_CACHED_GAMES) -> Path:
    """Write `game` under `root/gen-v<N>/<pool>/<folder>/` (atomically, idempotent); returns the
    path of its game.tw-pddl. An existing file with other bytes is rewritten. The pool keeps at
    most `max_cached` task folders: writing a new one evicts the least recently used."""
    from arlarena_envs.cache_dir import ensure_writable, evict_oldest, touch

    pool_dir = Path(root) / f"gen-v{GENERATOR_VERSION}" / game.pool
    folder = pool_dir / game.folder
    task_dir = pool_dir / game.folder.split("/", 1)[0]
    fresh = not folder.is_dir()
    ensure_writable(folder, "ALFWorld game cache folder")
    try:
        for name, data in game.files().items():
            path = folder / name
            if path.exists() and path.read_bytes() == data:
                continue
            # unique per process AND thread: the server resets sessions in threads, and two resets of
            # the same game in one process must not share (and rename away) one temporary file
            tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}-{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"cannot write the ALFWorld game {folder}: {e}; set ARLARENA_CACHE (or cache_dir=) to a writable folder") from None
    touch(task_dir)
    if fresh:
        evict_oldest(pool_dir, max_cached, protect=task_dir)
    return folder / "game.tw-pddl"
