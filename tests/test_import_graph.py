"""No import cycles between the package's modules (module-level and function-level imports: a
lazy import still ties two modules together), and the core modules import on their own in a
fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"arlarena_envs": ROOT / "arlarena_envs", "arlarena_baselines": ROOT / "baselines" / "arlarena_baselines"}


def _modules() -> dict[str, Path]:
    out = {}
    for name, folder in PACKAGES.items():
        for f in folder.rglob("*.py"):
            rel = f.relative_to(folder).with_suffix("")
            parts = [name, *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Modules of ours that `module` imports, at module level or inside a function (a lazy
    import still ties the two modules together)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            # the deepest module of ours the name refers to
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n and n != module:
                found.add(n)
    return found


def test_no_import_cycles():
    mods = _modules()
    graph = {m: _imports(p, m, set(mods)) for m, p in mods.items()}
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n] if n in stack else [m, n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # a child importing its own package's __init__ (which imports the child) is Python's
    # normal package layout, not a cycle between modules
    real = [c for c in cycles if not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert not real, "import cycles:\n" + "\n".join(" -> ".join(c) for c in real)


CORE = ["arlarena_envs.contract", "arlarena_envs.core", "arlarena_envs.registry", "arlarena_envs.episodes",
        "arlarena_envs.server.client", "arlarena_envs.pools", "arlarena_envs.checker",
        "arlarena_envs.leaderboard.evaluate", "arlarena_baselines.train", "arlarena_baselines.estimators"]


@pytest.mark.parametrize("module", CORE)
def test_module_imports_alone(module):
    """Each module imports first, in a fresh interpreter (an order-dependent cycle fails here)."""
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
