"""Synthetic face-recognition datasets: writing, resuming and repairing the dataset folder.

    from facelatent.boundaries.identity import IdentityBoundaries
    from facelatent.datasets import DatasetSettings, build_dataset
    ids = IdentityBoundaries.load("runs/ffhq/identities/boundaries.npz")
    report = build_dataset("data/synth", ids, DatasetSettings(per_identity=50, max_off=6))

Layout of a dataset folder::

    dataset.json                      manifest: settings, identity source, classes, shards done
    images/<class:05d>/<class:05d>_<k:03d>.png   112x112 crops on the ArcFace template
    full/<class:05d>/<class:05d>_<k:03d>.jpg      optional full images (``full_size``)
    parts/shard-<i:05d>.parquet       the metadata rows of each finished shard
    metadata.parquet                  all rows, merged when the last shard is written

A class is one (reference seed, side) pair: the reference's own identity on the "same" side of
its boundary and, with ``both_sides``, a second identity on the other side. Classes are numbered
in the order of (reference seed, side), so a class number never depends on the order of the
boundaries in their file or on which faces were found.

The build is a `facelatent.runs.ShardedRun`: shards of a few classes, computed by
`facelatent.datasets.shard.build_shard` on any engine and written here: images first, then the
shard's parquet part, then the manifest records the shard with the part's sha256. A run killed
at any point redoes only the shards not recorded (or whose part no longer matches its hash),
writing the same file names again, so nothing is lost or duplicated. The resume key covers the
settings, the generator and the identity boundaries' content (a hash of seeds, normals,
intercepts and reference latents) and how they were fitted, the offset units with every class's
resolved raw scale, and in mode "varied" the attribute directions: resuming with other
boundaries, units or directions is refused, never mixed in. A manifest with no shard done yet
(a build that failed before its first shard) is simply started over. Samples without a detected face keep their row (``face``
False, no image), so no later sample shifts.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelatent import __version__
from facelatent.datasets.shard import (
    DatasetJob,
    DatasetSettings,
    ShardRows,
    build_shard,
    plan_classes,
)
from facelatent.io import atomic_path, read_json, write_json
from facelatent.runs import (
    Engine,
    LocalEngine,
    Models,
    Progress,
    ShardedRun,
    ShardWrite,
)
from facelatent.runs.sharded import check_resume, now

__all__ = ["DatasetLedger", "DatasetReport", "build_dataset", "identities_key"]

MANIFEST = "dataset.json"
FORMAT = "facelatent.synthetic-dataset"
FORMAT_VERSION = 2        # 2: the resume key hashes the boundaries; shards record sha256
# What the boundaries' provenance says about how they were fitted (part of the resume key).
FIT_KEYS = ("method", "labels", "solver", "solver_options", "split", "seed", "store",
            "generator")


@dataclass
class DatasetReport:
    """What `build_dataset` did."""

    path: str
    action: str                           # "created", "resumed" or "complete"
    classes: int
    shards_written: int
    images_written: int                   # crops written in this call (faces found)
    samples_written: int                  # samples (rows) made in this call
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.samples_written / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["images_per_s"] = round(self.images_per_s, 3)
        out["stage_seconds"] = {k: round(v, 3) for k, v in self.stage_seconds.items()}
        return out


def identities_key(identities: Any) -> dict[str, Any]:
    """What a resumed build must share with the first: which references, their boundaries'
    content (sha256 of seeds, normals, intercepts and latents, in seed order) and how the
    boundaries were fitted."""
    order = np.argsort(np.asarray(identities.seeds), kind="stable")
    h = hashlib.sha256()
    for values, dtype in ((identities.seeds, np.int64), (identities.normals, np.float32),
                          (identities.intercepts, np.float64), (identities.latents, np.float32)):
        h.update(np.ascontiguousarray(np.asarray(values)[order], dtype=dtype).tobytes())
    prov = dict(getattr(identities, "provenance", {}) or {})
    return {"space": identities.space, "label_model": identities.model,
            "references": int(len(order)), "content_sha256": h.hexdigest(),
            "fit": {k: prov[k] for k in FIT_KEYS if k in prov}}


class DatasetLedger:
    """The manifest ``dataset.json`` of a dataset folder, as a `facelatent.runs.ShardLedger`:
    each change is written to disk (atomically) before the call returns."""

    def __init__(self, root: Path) -> None:
        self.path = root / MANIFEST
        self.manifest: dict[str, Any] | None = None

    def reload(self) -> None:
        self.manifest = (read_json(self.path, format=FORMAT, max_version=FORMAT_VERSION,
                                   kind="a facelatent dataset manifest")
                         if self.path.exists() else None)

    def start(self, manifest: Mapping[str, Any]) -> None:
        self.manifest = {**manifest, "shards": {}}
        self.save()

    def save(self) -> None:
        assert self.manifest is not None
        write_json(self.path, self.manifest, format=FORMAT, version=FORMAT_VERSION)

    def done(self) -> dict[int, dict[str, Any]]:
        return {int(k): v for k, v in (self.manifest or {}).get("shards", {}).items()}

    def record(self, index: int, record: Mapping[str, Any]) -> None:
        assert self.manifest is not None
        self.manifest["shards"][str(index)] = dict(record)
        self.manifest["updated"] = record.get("completed", now())
        self.save()

    def forget(self, indices: Any) -> None:
        assert self.manifest is not None
        for i in indices:
            self.manifest["shards"].pop(str(i), None)
        self.save()


# -- writing ------------------------------------------------------------------------------------
def _image_name(identity: int, sample: int, ext: str) -> str:
    return f"{identity:05d}/{identity:05d}_{sample:03d}.{ext}"


def _table(columns: dict[str, np.ndarray], paths: list[str]) -> Any:
    import pyarrow as pa

    arrays, names = [], []
    for name, values in {**columns, "path": np.asarray(paths, object)}.items():
        if name in ("latent",) or name.startswith("embedding_"):
            flat = pa.array(values.reshape(-1).astype(np.float32))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, values.shape[1]))
        elif values.dtype == object:
            arrays.append(pa.array(values.tolist(), pa.string()))
        else:
            arrays.append(pa.array(values))
        names.append(name)
    return pa.table(arrays, names=names)


def _part_path(root: Path, index: int) -> Path:
    return root / "parts" / f"shard-{index:05d}.parquet"


def _write_shard(root: Path, rows: ShardRows) -> tuple[int, str]:
    """Images, then the shard's parquet part (each file atomic). Returns the number of crops
    written and the part's sha256."""
    import pyarrow.parquet as pq
    from PIL import Image

    from facelatent.images import save_png

    ids, samples, found = (rows.columns["identity"], rows.columns["sample"],
                           rows.columns["face"])
    paths = []
    for i in range(len(ids)):
        name = _image_name(int(ids[i]), int(samples[i]), "png")
        if found[i]:
            with atomic_path(root / "images" / name) as tmp:
                save_png(rows.crops[i], tmp)
            paths.append(f"images/{name}")
        else:
            paths.append("")
        if rows.full is not None:
            with atomic_path(root / "full" / _image_name(int(ids[i]), int(samples[i]),
                                                         "jpg")) as tmp:
                Image.fromarray(rows.full[i]).save(tmp, format="JPEG", quality=95)
    with atomic_path(_part_path(root, rows.index)) as tmp:
        pq.write_table(_table(rows.columns, paths), tmp)
    return int(found.sum()), _sha256(_part_path(root, rows.index))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _part_intact(root: Path, index: int, record: Mapping[str, Any]) -> bool:
    """Whether shard ``index``'s parquet part is there and matches its recorded sha256."""
    part = _part_path(root, index)
    if not part.is_file():
        return False
    digest = (record.get("sha256") or {}).get("part")
    return digest is None or digest == _sha256(part)


def _merge(root: Path, shards: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(_part_path(root, i)) for i in range(shards)]
    with atomic_path(root / "metadata.parquet") as tmp:
        pq.write_table(pa.concat_tables(tables), tmp)


def _check_generator(name: str) -> None:
    """A typo in the generator's name fails here, before anything is written."""
    from facelatent.generators.base import check_generator_name

    check_generator_name(name)


# -- one call: create, resume or repair ---------------------------------------------------------
def _variation_facts(plans: Sequence[Any], variation: Any,
                     settings: DatasetSettings) -> dict[str, Any]:
    """The manifest's account of mode "varied": names, source, scale and each attribute's
    median strength std over the classes (raw latent units)."""
    if variation is None:
        return {}
    spreads = np.stack([p.spreads for p in plans])
    return {"variation": {"names": list(variation.names), "source": variation.source,
                          "scale": settings.attribute_scale,
                          "strength_std_median": {n: float(np.median(spreads[:, k]))
                                                  for k, n in enumerate(variation.names)}}}


def _scales_key(plans: Sequence[Any]) -> dict[str, Any]:
    digest = hashlib.sha256(np.array([p.scale for p in plans], dtype=np.float64).tobytes())
    return {"units": "sigma", "max_off_raw_sha256": digest.hexdigest()}


def _held_key(held: Mapping[str, Any], key: Mapping[str, Any]) -> dict[str, Any]:
    """The resume key of a held manifest; one written before offset units existed counted in
    raw units."""
    out = {name: held.get(name) for name in key}
    settings = out.get("settings")
    if isinstance(settings, dict) and "offset_units" not in settings:
        out["settings"] = {**settings, "offset_units": "raw"}
    return out


def build_dataset(out: str | Path, identities: Any, settings: DatasetSettings, *,
                  attributes: str | Path | None = None,
                  generator: str | None = None, limit: int | None = None,
                  engine: Engine | None = None, models: Models | None = None,
                  source: str | None = None, progress: Progress | None = None,
                  command: Sequence[str] | None = None) -> DatasetReport:
    """Write (or resume, or repair) the dataset at ``out`` from `IdentityBoundaries`
    ``identities``.

    ``attributes``: mode "varied" only: a folder of attribute boundary files; None fits yaw,
    pitch, smile and age on the boundaries' store (`facelatent.datasets.variation`). In sigma
    units, boundaries without ``sigma`` get it from their store (`ensure_sigma`), else
    MissingSpreadError.
    ``generator``: registry name (default: the one recorded in the boundaries' provenance).
    ``limit``: use only the first ``limit`` references by seed (None: all). ``engine``: what
    runs the shards (default `LocalEngine(models)`). ``progress``: told the totals once, then
    each finished shard's sample count. An existing dataset must have been made with the same
    settings, generator and boundaries (ResumeMismatchError naming the differences).
    """
    root = Path(out)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit (--identities-max) must be at least 1, got {limit}")
        identities = identities.select(np.sort(np.asarray(identities.seeds))[:limit])
    generator = generator or (identities.provenance or {}).get("generator")
    if not generator:
        raise ValueError("the identity boundaries do not record their generator; pass "
                         "generator='mobilestylegan-ffhq' (or --model)")
    _check_generator(generator)
    if attributes is not None and settings.mode != "varied":
        raise ValueError(f"attributes (--attributes) are for mode 'varied', not {settings.mode!r}")
    if settings.offset_units == "sigma":
        from facelatent.boundaries.identity import ensure_sigma

        identities = ensure_sigma(identities)
    variation = None
    if settings.mode == "varied":
        from facelatent.datasets.variation import attribute_directions

        variation = attribute_directions(identities, attributes)
    plans = plan_classes(identities, settings.both_sides, settings, variation)
    if not plans:
        raise ValueError("no identities to build: the boundaries file holds no reference")
    k = settings.classes_per_shard
    shards = [tuple(plans[i:i + k]) for i in range(0, len(plans), k)]
    key = {"settings": settings.resume_key(), "generator": generator,
           "identities": identities_key(identities)}
    if settings.offset_units == "sigma":
        key["scales"] = _scales_key(plans)
    if variation is not None:
        key["attributes"] = variation.key()
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} is a file; --out must be a dataset folder")
    root.mkdir(parents=True, exist_ok=True)
    ledger = DatasetLedger(root)
    with ShardedRun(root, ledger, "dataset") as run:
        held = ledger.manifest
        if held is not None and not ledger.done():
            held = None          # nothing was written under it: start over with these settings
        if held is None:
            ledger.start({**key, "identities_path": source, "label_model": identities.model,
                          "sampling": settings.mode, "max_off": settings.max_off,
                          "offset_units": settings.offset_units,
                          "max_off_raw": [round(p.scale, 6) for p in plans],
                          **_variation_facts(plans, variation, settings),
                          "classes": len(plans), "per_identity": settings.per_identity,
                          "shards_total": len(shards), "created": now(),
                          "facelatent_version": __version__,
                          "command": list(sys.argv if command is None else command),
                          "licence": "images derived from NVIDIA's FFHQ StyleGAN2 weights: "
                                     "non-commercial research use only"})
            action = "created"
        else:
            check_resume(f"dataset {root}", _held_key(held, key), key,
                         "Use a new --out folder, or the command the dataset was made with.")
            action = "resumed"
        planned = {i: len(shard) * settings.per_identity for i, shard in enumerate(shards)}
        todo = run.pending(planned, intact=lambda i, rec: _part_intact(root, i, rec))
        total = sum(planned.values())
        if progress is not None:
            progress.start(total, total - sum(planned[i] for i in todo))
        if not todo:
            if not (root / "metadata.parquet").exists():
                _merge(root, len(shards))
            return DatasetReport(str(root), "complete", len(plans), 0, 0, 0, 0.0)

        def write(job: DatasetJob, rows: ShardRows) -> ShardWrite:
            faces, digest = _write_shard(root, rows)
            return ShardWrite(len(rows.columns["identity"]), rows.seconds,
                              {"faces": faces, "sha256": {"part": digest}})

        jobs = (DatasetJob(i, shards[i], settings, generator, identities.space) for i in todo)
        stats = run.execute(engine or LocalEngine(models), build_shard, jobs, write,
                            index=lambda job: job.index, progress=progress)
        _merge(root, len(shards))
        done = ledger.done()
        assert ledger.manifest is not None
        ledger.manifest["faces"] = sum(int(rec["faces"]) for rec in done.values())
        ledger.save()
    images = sum(int(done[i]["faces"]) for i in todo)
    return DatasetReport(str(root), action, len(plans), stats.shards, images, stats.rows,
                         stats.seconds, stats.stage_seconds)
