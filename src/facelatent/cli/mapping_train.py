"""`facelatent mapping train`: one stage of the mapping's training, resumable.

    facelatent sample --n 4000 --psi 0.7 --images 256 --store runs/map-ffhq
    facelatent mapping train --store runs/map-ffhq --out runs/mapping --stage regress --preset cpu
    facelatent mapping train --store runs/map-ffhq --out runs/mapping --stage e2e --preset cpu
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = actions.add_parser(
        "train", help="train a stage of the mapping on a store's renders (resumable)",
        description="Stage 'regress' learns each render's known w without the generator; "
                    "stage 'e2e' (the paper's) renders the mapping's w with the frozen "
                    "generator and trains on identity, landmark, reconstruction and "
                    "W-adversarial losses, starting from the finished regress stage in the same "
                    "--out. The same command resumes a killed run; a larger --steps extends a "
                    "finished one.")
    p.add_argument("--store", required=True,
                   help="latent store sampled with --images (e.g. 256) and sface/dlib embeddings")
    p.add_argument("--out", required=True, help="run folder: checkpoint.npz, log.jsonl")
    p.add_argument("--stage", choices=("regress", "e2e"), default="regress")
    p.add_argument("--preset", choices=("cpu", "gpu"), default="cpu",
                   help="steps, batch and learning rate for this stage (README: figures)")
    p.add_argument("--steps", type=int, help="override the preset's step count")
    p.add_argument("--batch", type=int, help="override the preset's faces per step")
    p.add_argument("--lr", type=float, help="override the preset's learning rate")
    p.add_argument("--cross-every", type=int,
                   help="every k-th step pairs different faces (default 3; 0: never; regress "
                        "judges them with the latent proxy, e2e with the face models)")
    p.add_argument("--checkpoint-every", type=int,
                   help="steps between checkpoints (default: preset; does not change results)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and every batch")
    p.add_argument("--holdout", type=int, default=256,
                   help="last store rows kept out for validation")
    p.add_argument("--id-model", choices=("sface", "dlib"), default="sface",
                   help="frozen E_id (new runs; evaluate with the other recogniser)")
    p.add_argument("--attr-init", choices=("faceapi", "random"), default="faceapi",
                   help="E_attr's trunk: face-api's landmark net, or from scratch (new runs)")
    p.add_argument("--head", choices=("w", "wplus"), default="w",
                   help="one w for every style input, or one per input (new runs)")
    p.add_argument("--latent-weight", type=float,
                   help="e2e: weight of the known-w term on same-image steps (default: preset)")
    p.add_argument("--model", help="generator (default: the store's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from facelatent.cli.sample import ProgressBar
    from facelatent.generators import get_generator
    from facelatent.generators.base import resolve_device
    from facelatent.mapping.data import load_training_data
    from facelatent.mapping.model import MapperConfig
    from facelatent.mapping.train import preset, train_mapping

    device = resolve_device(args.device, "--device")
    overrides: dict[str, Any] = {k: v for k, v in (("steps", args.steps), ("batch", args.batch),
                                                   ("lr", args.lr),
                                                   ("checkpoint_every", args.checkpoint_every),
                                                   ("cross_every", args.cross_every))
                                 if v is not None}
    settings = preset(args.preset, args.stage, seed=args.seed, holdout=args.holdout,
                      device=str(device), **overrides)
    if args.latent_weight is not None:
        settings = replace(settings, weights=replace(settings.weights,
                                                     latent=args.latent_weight))
    data = load_training_data(args.store, args.id_model, args.holdout)
    G = get_generator(args.model or data.source["generator"], device)
    config = MapperConfig(w_dim=G.w_dim, num_ws=G.num_ws, id_model=args.id_model,
                          attr_init=args.attr_init, head=args.head)
    with ProgressBar(desc=f"mapping {args.stage}", unit="step") as bar:
        report = train_mapping(data, args.out, settings, config=config, generator=G,
                               progress=bar)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    elif report.action == "complete":
        print(f"{report.out}: the {report.stage} stage is complete at step {report.step}; "
              "nothing to do (a larger --steps extends it)")
    else:
        terms = ", ".join(f"{k} {v:.4g}" for k, v in report.recent.items())
        val = ", ".join(f"{k} {v:.4f}" for k, v in report.validation.items())
        print(f"{report.out} ({report.stage}, {report.action}): step {report.step}; "
              f"{report.steps_run} steps in {report.seconds:.0f} s "
              f"({report.steps_per_s:.2f} steps/s); last 50 steps: {terms}; validation: {val}")
    return 0
