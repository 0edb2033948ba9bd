"""`arlarena webshop`: build and verify on-disk WebShop catalogues (stores).

    arlarena webshop build-catalogue --products 1000000 --out DIR [--seed 0]
    arlarena webshop build-catalogue --from-original DATA_DIR --out DIR [--price-seed 0]
    arlarena webshop verify-catalogue DIR

Use a store with `gym.make("arlarena/WebShop-v0", catalogue="store", store=DIR)`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arlarena_envs.webshop import store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build-catalogue", help="build a store from the generator or from the original files")
    b.add_argument("--out", required=True, help="store directory to create")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--products", type=int, help="number of generated products (streamed generator)")
    src.add_argument("--from-original", metavar="DATA_DIR", help="folder with items_shuffle*.json and items_ins_v2*.json")
    b.add_argument("--seed", type=int, default=0, help="generator seed (prices and bounds use seed + 1)")
    b.add_argument("--price-seed", type=int, default=0, help="price seed for the original files (as WebShop-original-v0)")
    b.add_argument("--force", action="store_true", help="replace an existing store at --out")
    v = sub.add_parser("verify-catalogue", help="check every file of a store against its sha256")
    v.add_argument("store")


def main(args: argparse.Namespace) -> int:
    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.action == "build-catalogue":
        if args.products is not None:
            m = store.build_generated_store(args.out, args.products, args.seed, overwrite=args.force, progress=say)
        else:
            m = store.build_original_store(args.out, args.from_original, args.price_seed, overwrite=args.force, progress=say)
        print(f"{args.out}: {m.products:,} products, {m.goals:,} goals, identity {m.identity}")
        return 0
    root = Path(args.store)
    m = store.read_manifest(root)
    store.check_files(root, m, full=True)
    print(f"{root}: ok ({m.products:,} products, {m.goals:,} goals, identity {m.identity})")
    return 0
