"""The `arlarena` command. Each subcommand lives in its own module, imported only when used:
the module defines `add_arguments(parser)` and `main(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("arlarena_envs.cli_basic", "list registered env ids with their protocol"),
    "play": ("arlarena_envs.play", "play an env interactively in the terminal"),
    "check": ("arlarena_envs.checker", "run the conformance checks on an env id"),
    "schema": ("arlarena_envs.cli_basic", "write the JSON schemas of the contract models"),
    "serve": ("arlarena_envs.server.cli", "serve env ids over WebSocket/HTTP"),
    "train": ("arlarena_baselines.cli", "train with the SAMPO baseline (or a variant) from a YAML config"),
    "stability": ("arlarena_envs.stability.cli", "stability report of training runs"),
    "leaderboard": ("arlarena_envs.leaderboard.cli", "evaluate policies and render the leaderboard"),
    "containers": ("arlarena_envs.containers", "build the env container images"),
    "webshop": ("arlarena_envs.webshop.cli", "build / verify an on-disk WebShop catalogue (store)"),
    "demo": ("arlarena_envs.demo", "the main job: leaderboard of random/oracle + a tiny SAMPO run"),
}


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="arlarena",
        description="ARLArena: text envs, SAMPO baseline, stability evaluator, leaderboard.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {k:<12} {v[1]}" for k, v in COMMANDS.items()),
    )
    p.add_argument("command", choices=sorted(COMMANDS), metavar="command", help="one of the commands below")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0 if argv else 2
    if argv[0] == "--version":
        from arlarena_envs import __version__

        print(__version__)
        return 0
    name = argv[0]
    if name not in COMMANDS:
        _top_parser().parse_args(argv[:1])  # prints the usage error and exits 2
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        print(f"arlarena {name}: cannot load {module_name}: {e}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"arlarena {name}", description=help_text)
    getattr(module, f"add_{name}_arguments", getattr(module, "add_arguments", lambda p: None))(parser)
    args = parser.parse_args(argv[1:])
    runner = getattr(module, f"main_{name}", None) or getattr(module, "main")
    from arlarena_envs.errors import ArlArenaError

    try:
        return int(runner(args) or 0)
    except ArlArenaError as e:
        print(f"arlarena {name}: error: {_one_line(str(e))}", file=sys.stderr)
        return 1
    except OSError as e:  # the file system or a peer refused (a path the user gave, a full disk)
        print(f"arlarena {name}: error: {_one_line(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"arlarena {name}: interrupted", file=sys.stderr)
        return 130


def _one_line(message: str, limit: int = 2000) -> str:
    """An error message as one line (validation errors span several) of bounded length."""
    text = " | ".join(part.strip() for part in message.splitlines() if part.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
