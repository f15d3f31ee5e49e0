"""Which boundary solver edits best? Fit every solver on one store, then edit the same held-out
faces by the same latent distances along each boundary and measure edit quality
(`facelatent.evaluation.quality`): attribute change per latent unit, identity loss and drift of
the other attributes per sd of attribute change.

    python scripts/compare_solvers.py --store runs/ffhq20k --out runs/solvers \
        [--attributes yaw,smile_logit,age,gender_logit,eyeglasses] [--n 24] \
        [--seeds-from 1000000] [--extra age_logit=path/to/their_age_boundary.npy ...]

Per attribute (W space), on the top/bottom 2 % protocol and on a median split:
svc (raw, InterFaceGAN's), linear-svc, logistic standardised (C 1 and 0.01) and raw (C 1), lda
and the mean difference. `--protocol-interfacegan` adds InterFaceGAN's exact protocol (its split,
seeded). Boundaries whose normals agree to cosine 0.9999 are edited once. The faces are seeds
from `--seeds-from` on (none of them in the store); the distances are +-1.5 and +-3 times the
samples' spread along the svc 2 % normal, the same for every boundary of an attribute.

Writes `OUT/<attribute>/<label>.npz`, `OUT/<attribute>/comparison.json` (read by
`facelatent report --evaluations OUT`) and `OUT/table.md`, and prints the table. Resumable:
an attribute whose comparison.json exists is read, not redone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

CONFIGS = [   # label, solver, C, standardize
    ("svc", "svc", 1.0, None),
    ("linear-svc", "linear-svc", 1.0, None),
    ("logistic", "logistic", 1.0, None),
    ("logistic-C0.01", "logistic", 0.01, None),
    ("logistic-raw", "logistic", 1.0, False),
    ("lda", "lda", 1.0, None),
    ("mean-diff", "mean-diff", 1.0, None),
]
PROTOCOLS = {"2%": (0.02, "2pc"), "median": (None, "median")}   # name: (ratio, file tag)


def fit_all(w: np.ndarray, scores: np.ndarray, attribute: str, folder: Path,
            interfacegan: bool) -> tuple[list[str], list, list[float]]:
    from facelatent.boundaries import LinearBoundary

    labels, boundaries, seconds = [], [], []
    for proto, (ratio, tag) in PROTOCOLS.items():
        for label, solver, C, std in CONFIGS:
            est = LinearBoundary(solver=solver, ratio=ratio, C=C, standardize=std, bootstrap=0,
                                 random_state=0)
            t = time.perf_counter()
            est.fit(w, scores)
            seconds.append(time.perf_counter() - t)
            name = f"{label} {proto}"
            b = est.to_boundary(attribute, "w", {"config": name})
            b.save(folder / f"{label}_{tag}.npz")
            labels.append(name)
            boundaries.append(b)
    if interfacegan:
        est = LinearBoundary(solver="svc", protocol="interfacegan", random_state=0, bootstrap=0)
        t = time.perf_counter()
        est.fit(w, scores)
        seconds.append(time.perf_counter() - t)
        b = est.to_boundary(attribute, "w", {"config": "svc interfacegan"})
        b.save(folder / "svc_interfacegan.npz")
        labels.append("svc interfacegan-protocol")
        boundaries.append(b)
    return labels, boundaries, seconds


def dedupe(boundaries: list) -> list[int]:
    """For each boundary, the index of the first one whose normal agrees to cosine 0.9999."""
    first: list[int] = []
    for i, b in enumerate(boundaries):
        for j in range(i):
            if first[j] == j and float(b.normal @ boundaries[j].normal) > 0.9999:
                first.append(j)
                break
        else:
            first.append(i)
    return first


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--attributes", default="yaw,smile_logit,age,gender_logit,eyeglasses")
    p.add_argument("--n", type=int, default=24, help="held-out faces")
    p.add_argument("--seeds-from", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--protocol-interfacegan", action="store_true")
    p.add_argument("--extra", nargs="*", default=[], metavar="ATTRIBUTE=FILE",
                   help="more boundary files to compare for an attribute (e.g. InterFaceGAN's own)")
    args = p.parse_args()

    from facelatent.runtime import passive_waiting
    passive_waiting()
    from tqdm import tqdm

    from facelatent.boundaries.boundary import load_boundary
    from facelatent.evaluation.metrics import evaluation_identity_model
    from facelatent.evaluation.quality import compare_boundaries
    from facelatent.faces.analysis import FaceAnalyzer
    from facelatent.generators import get_generator
    from facelatent.io import jsonable, read_json, write_json
    from facelatent.latents.store import LatentStore

    store = LatentStore.open(args.store, read_only=True)
    spec = store.spec
    w = store.latents("w")
    seeds = list(range(args.seeds_from, args.seeds_from + args.n))
    if np.isin(seeds, store.seeds()).any():
        raise SystemExit(f"--seeds-from {args.seeds_from}: some seeds are in the store; pick others")
    extras: dict[str, list[tuple[str, str]]] = {}
    for item in args.extra:
        attr, _, path = item.partition("=")
        extras.setdefault(attr, []).append((Path(path).stem, path))
    out = Path(args.out)
    G = an = None
    identity_model = evaluation_identity_model(spec.identity)
    score_sd = {n: float(np.nanstd(store.scores(n))) for n in spec.attributes}
    summary = {}
    load = os.getloadavg()
    for attribute in args.attributes.split(","):
        folder = out / attribute
        folder.mkdir(parents=True, exist_ok=True)
        done = folder / "comparison.json"
        if done.is_file():
            summary[attribute] = read_json(done)
            continue
        labels, boundaries, seconds = fit_all(w, store.scores(attribute), attribute, folder,
                                              args.protocol_interfacegan)
        for label, path in extras.get(attribute, []):
            labels.append(label)
            boundaries.append(load_boundary(path, space="w"))
            seconds.append(float("nan"))
        first = dedupe(boundaries)
        unique = sorted(set(first))
        unit = float(boundaries[0].metrics["sigma"])          # svc 2 %: the samples' spread
        distances = np.array([-3.0, -1.5, 1.5, 3.0]) * unit
        if G is None:
            G = get_generator(spec.generator, device="cpu")
            an = FaceAnalyzer("cpu", batch_size=args.batch)
        with tqdm(unit="img", desc=attribute, file=sys.stderr) as bar:
            result = compare_boundaries(
                G, an, [boundaries[i] for i in unique], seeds, distances,
                identity_model=identity_model, score_sd=score_sd,
                labels=[labels[i] for i in unique], truncation_psi=spec.truncation_psi,
                truncation_space=spec.truncation_space, batch=args.batch,
                attributes=spec.attributes or None, progress=bar.update, on_start=bar.reset)
        by_label = {r["label"]: r for r in result["rows"]}
        rows = []
        for i, label in enumerate(labels):
            row = dict(by_label[labels[first[i]]])
            row.update(label=label, same_as=None if first[i] == i else labels[first[i]],
                       fit_seconds=seconds[i],
                       cos_to_first=float(boundaries[0].normal @ boundaries[i].normal),
                       metrics={k: boundaries[i].metrics.get(k) for k in
                                ("val_accuracy", "remaining_accuracy",
                                 "remaining_accuracy_interfacegan", "sigma")})
            rows.append(row)
        data = jsonable({"rows": rows, "settings": {**result["settings"], "store": args.store,
                                                    "n_store": len(w), "seeds": seeds,
                                                    "distance_unit": unit, "loadavg": load}})
        write_json(done, data, format="facelatent.edit-comparison", version=1)
        summary[attribute] = data
    lines = table(summary)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    return 0


def table(summary: dict) -> list[str]:
    def f(v, fmt="{:.3f}"):
        return "-" if v is None else fmt.format(v)

    lines = [("| attribute | boundary | val acc | rem. (median) | rem. (IFG) | cos to svc 2% | "
              "change/unit (sd) | identity loss / sd change | drift / sd change | same person | "
              "distance for 1 sd | fit s |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for attribute, data in summary.items():
        for r in data["rows"]:
            q = r.get("quality") or {}
            m = r.get("metrics") or {}
            at = q.get("at_change") or {}
            lines.append(
                f"| {attribute} | {r['label']} | {f(m.get('val_accuracy'))} | "
                f"{f(m.get('remaining_accuracy'))} | {f(m.get('remaining_accuracy_interfacegan'))} | "
                f"{f(r.get('cos_to_first'))} | {f(q.get('change_per_unit_sd'))} | "
                f"{f(q.get('identity_loss_per_change'), '{:.4f}')} ± {f(q.get('identity_loss_per_change_se'), '{:.4f}')} | "
                f"{f(q.get('drift_per_change'))} ± {f(q.get('drift_per_change_se'))} | "
                f"{f(q.get('same_person_edited'), '{:.2f}')} | {f(at.get('distance'), '{:.2f}')} | "
                f"{f(r.get('fit_seconds'), '{:.2f}')} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
