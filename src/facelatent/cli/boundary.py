"""`facelatent boundary fit|condition|correlate` and `facelatent directions sefa|ganspace`.

Every command writes or reads boundary files (`facelatent.boundaries.boundary`); every command
that reads them also takes InterFaceGAN's `.npy` files. Library imports happen inside the
commands, so `facelatent --help` does not load scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from facelatent.cli.constants import DEFAULT_SOLVER, SOLVERS


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("boundary", help="fit, condition and correlate attribute boundaries",
                           description="Linear attribute boundaries (InterFaceGAN) in Z or W.")
    actions = group.add_subparsers(dest="boundary_command", metavar="ACTION", required=True)

    p = actions.add_parser(
        "fit", help="fit one attribute's boundary from a store",
        description="InterFaceGAN's protocol: top/bottom RATIO of samples by score as the two "
                    "classes, a seeded SPLIT for training, a linear solver with an intercept. "
                    "Prints validation, remaining-sample (ours: median labels; InterFaceGAN's: "
                    "midpoint labels) and bootstrap-stability figures. --protocol interfacegan is "
                    "InterFaceGAN's train_boundary exactly (svc on raw latents, its split).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="LatentStore folder (from `facelatent sample`)")
    src.add_argument("--npz", help="an .npz with arrays `w` and/or `z` and `scores_<attribute>`")
    p.add_argument("--attribute", required=True, help="score name, e.g. smile")
    p.add_argument("--space", choices=("w", "z"), default="w", help="latent space to fit in")
    p.add_argument("--ratio", type=float, default=0.02,
                   help="fraction of samples per class from each end; 0.5 = median split")
    p.add_argument("--split", type=float, default=0.7, help="training fraction of each class")
    p.add_argument("--solver", choices=SOLVERS, default=None,
                   help=f"{DEFAULT_SOLVER} (default), {', '.join(s for s in SOLVERS if s != DEFAULT_SOLVER)}"
                        " (svc is InterFaceGAN's; README: the comparison by edit quality)")
    p.add_argument("--protocol", choices=("facelatent", "interfacegan"), default="facelatent",
                   help="interfacegan: its train_boundary index for index (svc, raw latents, "
                        "floor of split, legacy-seeded shuffle); --seed S equals np.random.seed(S)")
    p.add_argument("--C", type=float, default=1.0, help="inverse regularisation (logistic, linear-svc, svc)")
    p.add_argument("--seed", type=int, default=0, help="seeds the split and the bootstrap")
    p.add_argument("--bootstrap", type=int, default=5, help="refits for stability; 0 = skip")
    p.add_argument("--out", required=True, help="boundary file to write (.npz)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_fit)

    p = actions.add_parser(
        "condition", help="make a boundary orthogonal to others",
        description="Project PRIMAL's normal onto the orthogonal complement of the conditions' "
                    "normals (least squares; any number, dependent ones included).")
    p.add_argument("primal", metavar="PRIMAL", help="boundary file (.npz or InterFaceGAN .npy)")
    p.add_argument("--on", nargs="+", required=True, metavar="COND", help="condition boundary files")
    p.add_argument("--space", choices=("z", "w", "wp"), default=None,
                   help="space of .npy files whose name does not say (conditions default to "
                        "PRIMAL's)")
    p.add_argument("--out", required=True, help="boundary file to write (.npz)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_condition)

    p = actions.add_parser("correlate", help="cosine matrix between boundaries",
                           description="Cosines between the normals of boundary files of one space.")
    p.add_argument("files", nargs="+", metavar="FILE", help="boundary files (.npz or .npy)")
    p.add_argument("--absolute", action="store_true", help="report |cos|")
    p.add_argument("--space", choices=("z", "w", "wp"), default=None,
                   help="space of .npy files whose name does not say")
    p.add_argument("--heatmap", help="also write a heatmap PNG here")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_correlate)

    group = sub.add_parser("directions", help="unsupervised directions (SeFa, GANSpace)",
                           description="Directions found without attribute labels, written as "
                                       "boundary files.")
    actions = group.add_subparsers(dest="directions_command", metavar="METHOD", required=True)
    p = actions.add_parser("sefa", help="closed-form directions from the style weights",
                           description="SeFa: top eigenvectors of the stacked, row-normalised "
                                       "style-affine weights of the chosen style inputs.")
    p.add_argument("--model", default="mobilestylegan-ffhq", help="generator name (torch backend)")
    p.add_argument("--layers", default="all", help="style inputs, e.g. 0-7 or 0-3,8 (default all)")
    p.add_argument("--k", type=int, default=5, help="number of directions")
    p.add_argument("--out", required=True, help="folder for sefa_<rank>.npz")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_sefa)

    p = actions.add_parser("ganspace", help="principal axes of latent samples",
                           description="GANSpace: PCA (SVD) of the store's latents.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="LatentStore folder")
    src.add_argument("--npz", help="an .npz with an array named like --space")
    p.add_argument("--space", choices=("w", "z"), default="w", help="latent space")
    p.add_argument("--k", type=int, default=10, help="number of directions")
    p.add_argument("--out", required=True, help="folder for pca_<rank>.npz")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_ganspace)


# --- boundary ---------------------------------------------------------------------------

def cmd_fit(args: argparse.Namespace) -> int:
    from facelatent.boundaries import LinearBoundary, read_fit_data
    from facelatent.io import jsonable

    latents, scores, source = read_fit_data(store=args.store, npz=args.npz, space=args.space,
                                            attribute=args.attribute)
    solver = args.solver or ("svc" if args.protocol == "interfacegan" else DEFAULT_SOLVER)
    print(f"fitting {args.attribute} in {args.space} on {len(latents)} samples "
          f"({solver}, ratio {args.ratio}, {args.protocol} protocol, {args.bootstrap} bootstrap "
          "refits)...", file=sys.stderr, flush=True)
    est = LinearBoundary(solver=solver, ratio=args.ratio, split=args.split, C=args.C,
                         random_state=args.seed, bootstrap=args.bootstrap,
                         protocol=args.protocol).fit(latents, scores)
    boundary = est.to_boundary(args.attribute, args.space, {**source, **_command(args)})
    path = boundary.save(args.out)
    m = boundary.metrics
    if args.json:
        print(json.dumps(jsonable({"out": str(path), "attribute": boundary.attribute,
                                   "space": boundary.space, "intercept": boundary.intercept,
                                   "metrics": m, "provenance": boundary.provenance}), indent=2))
    else:
        print(f"{boundary.attribute} ({boundary.space}): validation accuracy {_pct(m['val_accuracy'])}, "
              f"remaining {_pct(m['remaining_accuracy'])} (median labels; InterFaceGAN's midpoint "
              f"labels {_pct(m['remaining_accuracy_interfacegan'])}), stability {_num(m['stability'])}, "
              f"train {m['n_train']} / val {m['n_val']} / remaining {m['n_remaining']}, "
              f"fit {m['train_time_s']:.3f} s")
        print(f"wrote {path}")
    return 0


def cmd_condition(args: argparse.Namespace) -> int:
    import numpy as np

    from facelatent.boundaries import condition_boundary, load_boundary
    from facelatent.io import jsonable

    primal = load_boundary(args.primal, args.space)
    conditions = [load_boundary(f, args.space or primal.space) for f in args.on]
    result = condition_boundary(primal, conditions)
    result.provenance.update(_command(args))
    path = result.save(args.out)
    residual = [float(abs(result.normal.ravel().astype(np.float64) @ c.normal.ravel())) for c in conditions]
    if args.json:
        print(json.dumps(jsonable({"out": str(path), "attribute": result.attribute,
                                   "conditions": [c.attribute for c in conditions],
                                   "cos_to_primal": result.metrics["cos_to_primal"],
                                   "max_abs_cos_to_conditions": max(residual)}), indent=2))
    else:
        names = ", ".join(c.attribute for c in conditions)
        print(f"{result.attribute} conditioned on {names}: cos to primal "
              f"{result.metrics['cos_to_primal']:.4f}, max |cos| to conditions {max(residual):.1e}")
        print(f"wrote {path}")
    return 0


def cmd_correlate(args: argparse.Namespace) -> int:
    import numpy as np

    from facelatent.boundaries import correlation_matrix, load_boundary
    from facelatent.boundaries.conditional import save_correlation_heatmap

    boundaries = [load_boundary(f, args.space) for f in args.files]
    names = [b.attribute or Path(f).stem for b, f in zip(boundaries, args.files)]
    if len(set(names)) < len(names):  # two files of one attribute: tell them apart by file name
        names = [Path(f).name.split(".")[0] for f in args.files]
    cos = correlation_matrix(boundaries, absolute=args.absolute)
    if args.heatmap:
        save_correlation_heatmap(cos, names, args.heatmap,
                                 title="|cos|" if args.absolute else "cos between boundary normals")
    if args.json:
        print(json.dumps({"labels": names, "files": list(args.files), "absolute": args.absolute,
                          "cosine": np.round(cos, 6).tolist(), "heatmap": args.heatmap}, indent=2))
        return 0
    width = max(6, *(len(n) for n in names))
    print(" " * width + "".join(f"{n[:8]:>9}" for n in names))
    for name, row in zip(names, cos):
        print(f"{name:<{width}}" + "".join(f"{v:9.3f}" for v in row))
    if args.heatmap:
        print(f"wrote {args.heatmap}")
    return 0


# --- directions -------------------------------------------------------------------------

def cmd_sefa(args: argparse.Namespace) -> int:
    from facelatent.boundaries import SeFa
    from facelatent.generators import get_generator
    from facelatent.ranges import parse_layers

    G = get_generator(args.model, device="cpu", backend="torch")
    layers = parse_layers(args.layers, G.num_ws)
    directions = SeFa(layers=layers, k=args.k).fit(G).to_boundaries()
    return _write_directions(directions, args, "eigenvalue")


def cmd_ganspace(args: argparse.Namespace) -> int:
    from facelatent.boundaries import GANSpace, read_fit_data

    latents, _, source = read_fit_data(store=args.store, npz=args.npz, space=args.space)
    directions = GANSpace(k=args.k, space=args.space).fit(latents).to_boundaries()
    for d in directions:
        d.provenance.update(source)
    return _write_directions(directions, args, "explained_variance_ratio")


def _write_directions(directions: list[Any], args: argparse.Namespace, key: str) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in directions:
        d.provenance.update(_command(args))
        paths.append(d.save(out / f"{d.attribute}.npz"))
    if args.json:
        print(json.dumps([{"file": str(p), "attribute": d.attribute, key: d.metrics[key]}
                          for p, d in zip(paths, directions)], indent=2))
    else:
        for p, d in zip(paths, directions):
            print(f"{d.attribute:<10} {key} {d.metrics[key]:.4g}  {p}")
    return 0


# --- shared -----------------------------------------------------------------------------

def _command(args: argparse.Namespace) -> dict[str, Any]:
    from facelatent.io import jsonable

    arguments = {k: v for k, v in vars(args).items()
                 if k not in ("func", "command") and not k.endswith("_command")}
    group = "boundary" if getattr(args, "boundary_command", None) else "directions"
    action = getattr(args, "boundary_command", None) or getattr(args, "directions_command", "")
    return {"command": f"facelatent {group} {action}", "arguments": jsonable(arguments),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _pct(v: float | None) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}%"


def _num(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"
