"""`arlarena list` and `arlarena schema`."""

from __future__ import annotations

import argparse


def add_list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the specs as JSON")


def main_list(args: argparse.Namespace) -> int:
    import json

    from arlarena_envs.registry import load_specs

    specs = load_specs()
    if args.json:
        print(json.dumps({k: v.model_dump(mode="json") for k, v in sorted(specs.items())}, indent=2))
        return 0
    print(f"{'id':<28} {'max_steps':>9} {'H':>2} {'template':<16} {'splits':<28} requires")
    for sid, s in sorted(specs.items()):
        splits = ",".join(f"{k}:{v.size}" for k, v in s.splits.items())
        print(f"{sid:<28} {s.protocol.max_steps:>9} {s.protocol.history_length:>2} {s.protocol.template_id:<16} {splits:<28} {','.join(s.requires) or '-'}")
    return 0


def add_schema_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", nargs="?", default="schemas", help="folder to write <Model>.schema.json into")


def main_schema(args: argparse.Namespace) -> int:
    from arlarena_envs.contract import export_json_schemas

    for path in export_json_schemas(args.out_dir):
        print(path)
    return 0


def parse_env_kwargs(text: str, flag: str = "--env-kwargs") -> dict:
    """The value of an --env-kwargs flag: a JSON object (otherwise a one-line ConfigError)."""
    import json

    from arlarena_envs.errors import ConfigError

    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{flag} must be a JSON object, e.g. '{{\"max_steps\": 5}}': {e}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a JSON object, got {type(value).__name__}")
    return value
