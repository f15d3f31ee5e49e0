"""`facelatent store verify|info`: check a latent store against its checksums; summarise it."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("store", help="check or describe a latent store",
                           description="Latent stores written by `facelatent sample`.")
    actions = group.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "verify", help="read every shard and check its checksums; name the damaged ones",
        description="Reads every array of every complete shard, checks each chunk's crc32c and "
                    "each shard's sha256, and lists the damaged shards. Exit 0: intact; 1: "
                    "damaged (rerun the store's `facelatent sample` command to rewrite them).")
    p.add_argument("store", help="store folder")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_verify)
    p = actions.add_parser("info", help="what a store holds: generator, settings, samples")
    p.add_argument("store", help="store folder")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run_info)


def run_verify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facelatent.latents.store import LatentStore

    store = LatentStore.open(args.store, read_only=True)
    with tqdm(total=len(store), unit="sample", desc="verify", file=sys.stderr,
              disable=args.json) as bar:
        problems = store.verify(progress=bar.update)
    checked = len(store.complete_shards())
    if args.json:
        print(json.dumps({"store": str(args.store), "shards_checked": checked,
                          "samples": len(store), "checksums": "sha256" if
                          store.manifest.get("format_version", 1) >= 2 else "fill values only",
                          "damaged": [{"shard": p.shard, "rows": [p.rows.start, p.rows.stop],
                                       "array": p.array, "reason": p.reason}
                                      for p in problems]}, indent=2))
    elif problems:
        for problem in problems:
            print(f"damaged: {problem}")
        print(f"{args.store}: {len(problems)} of {checked} shards are damaged; rerun the "
              "store's `facelatent sample` command (same --store and --n) to rewrite them")
    else:
        print(f"{args.store}: all {checked} shards ({len(store)} samples) match their checksums")
    return 1 if problems else 0


def run_info(args: argparse.Namespace) -> int:
    from facelatent.latents.store import LatentStore

    store = LatentStore.open(args.store, read_only=True)
    manifest = store.manifest
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    spec = store.spec
    print(f"{args.store}: {len(store)} of {store.size} samples complete "
          f"({len(store.complete_shards())} of {store.num_shards()} shards of {spec.shard_size})")
    print(f"  generator {spec.generator} ({spec.backend}), psi {spec.truncation_psi:g} in "
          f"{spec.truncation_space}, seeds from {spec.seed_start}")
    print(f"  scores: {', '.join(spec.attributes) or 'none'}")
    print(f"  identity: {', '.join(spec.identity) or 'none'}")
    print(f"  format {manifest.get('format_version')}, created {manifest.get('created')} by "
          f"facelatent {manifest.get('facelatent_version')}")
    return 0
