"""LatentStore: the samples of one generator configuration in a zarr v3 directory, written shard
by shard so that a killed run resumes without losing or duplicating a sample.

Layout (every array is chunked by shard, `shard_size` rows per chunk):

    <store>/zarr.json          root group; its attributes are the manifest (see `LatentStore`)
    seeds                      int64   [n]            the sample's seed; its z comes from it alone
    z                          float32 [n, z_dim]     the latent the mapping network read
    w                          float32 [n, w_dim]     the mapping's output, truncation applied
    scores/<attribute>         float32 [n]            one per attribute (facelatent.faces)
    identity/<model>           float32 [n, 128]       unit embeddings, "sface" and/or "dlib"
    images                     uint8   [n, 3, S, S]   the renders, area-downsampled to S px
                                                      (only with image_size; for training
                                                      image encoders such as facelatent.mapping)

Row `r` holds seed `seed_start + r`; shard `i` is rows `i * shard_size` up to the next shard.
A shard counts only once its record is in the manifest's "shards". `write_shard` writes every
array first and the record last, and zarr's local store writes each file to a temporary name
and renames it, so a process killed at any moment leaves every shard either recorded with all
its rows or not recorded at all. Readers return recorded shards only, in seed order.

Corruption is caught, not read: every chunk carries a crc32c checksum (zarr's codec, checked
on each read), and each shard's record keeps the sha256 of every array's rows, checked by the
readers and by `verify`. A flipped bit, a truncated or deleted chunk file (which zarr would
otherwise read back as fill values) raises `StoreCorruptError` naming the shard; `verify`
lists every damaged shard, and `facelatent sample` with the store's command rewrites them.
Stores of format version 1 (before checksums) are read as before; `verify` checks them for
fill values only.

``path`` is a local folder, or any fsspec URL zarr can open (e.g. ``s3://bucket/run``), passed
to zarr unchanged; the writer lock and the atomic creation are for local folders only.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from facelatent import __version__
from facelatent.errors import FacelatentError, FileFormatError
from facelatent.io import writer_lock
from facelatent.latents.spec import IDENTITY_DIM, IDENTITY_MODELS, StoreSpec
from facelatent.runs.sharded import ResumeMismatchError, array_digests, check_resume, now

__all__ = ["FORMAT", "IDENTITY_DIM", "IDENTITY_MODELS", "LatentStore", "ShardProblem",
           "StoreCorruptError", "StoreMismatchError", "StoreSpec"]

FORMAT = "facelatent.latent-store"
FORMAT_VERSION = 2            # 2: crc32c on every chunk, sha256 per shard and array


class StoreMismatchError(ResumeMismatchError):
    """A store was opened for samples of another configuration than the one it holds."""


class StoreCorruptError(FacelatentError):
    """A store's data no longer matches its checksums (or its files are missing)."""


@dataclass(frozen=True)
class ShardProblem:
    """One damaged shard found by `LatentStore.verify`."""

    shard: int
    rows: range
    array: str                            # the first damaged array of the shard
    reason: str

    def __str__(self) -> str:
        return (f"shard {self.shard} (rows {self.rows.start}-{self.rows.stop - 1}), array "
                f"{self.array!r}: {self.reason}")


def _is_url(path: str | os.PathLike[str]) -> bool:
    return "://" in str(path)


class LatentStore:
    """Seeds, latents, scores and identity embeddings of one `StoreSpec`, plus a manifest.

    Build one with :meth:`create` or :meth:`open`, never with the constructor. The manifest
    (root attributes, :attr:`manifest`) holds the spec's fields, ``n`` (rows planned),
    ``format``/``format_version``, ``facelatent_version`` and ``command`` (``sys.argv``) at
    creation, ``created``/``updated`` (UTC, ISO 8601), ``runs`` (one entry per command that
    wrote to it) and ``shards``: ``{"<index>": {"rows", "completed", ...}}`` for complete
    shards, with whatever the writer added (stage timings, device).
    """

    def __init__(self, group: zarr.Group, path: str | Path, read_only: bool) -> None:
        self._group = group
        self.path = path
        self.read_only = read_only
        self._attrs: dict[str, Any] = group.attrs.asdict()
        if self._attrs.get("format") != FORMAT:
            raise FileFormatError(f"{path} is a zarr group but not a facelatent latent store "
                                  f"(no '{FORMAT}' manifest)")
        version = self._attrs.get("format_version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise FileFormatError(f"store {path} has format version {version!r}; this "
                                  f"facelatent ({__version__}) reads up to {FORMAT_VERSION}: "
                                  "upgrade it")
        try:
            self.spec = StoreSpec.from_json(self._attrs)
            self.size, len(self)  # noqa: B018 (both read the manifest: check it parses)
        except (TypeError, ValueError, KeyError) as exc:
            raise FileFormatError(f"store {path} has a damaged manifest (zarr.json): {exc}; "
                                  "it cannot be read") from None
        missing = [name for name in self.spec.arrays() if name not in group]
        if missing:
            raise StoreCorruptError(f"store {path} is damaged: its arrays {missing} are missing "
                                    "(their zarr.json files were deleted); it cannot be repaired, "
                                    "sample into a new store")

    # -- creating and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], spec: StoreSpec, n: int,
               command: Sequence[str] | None = None) -> LatentStore:
        """A new, empty store at ``path`` for ``n`` samples (rows) of ``spec``.

        ``command`` defaults to ``sys.argv``. A local store is built in a temporary folder
        beside ``path`` and renamed into place, so it appears complete or not at all.
        Raises FileExistsError if ``path`` exists and is not an empty folder.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        created = now()
        attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, **spec.to_json(), "n": int(n),
                 "facelatent_version": __version__,
                 "command": list(sys.argv if command is None else command),
                 "created": created, "updated": created, "runs": [], "shards": {}}
        if _is_url(path):
            group = zarr.open_group(str(path), mode="w-", zarr_format=3, attributes=attrs)
            _create_arrays(group, spec, n)
            return cls(group, str(path), read_only=False)
        target = Path(path)
        if cls.exists(target):
            raise FileExistsError(f"a store already exists at {target}; open it with "
                                  "LatentStore.open, or pick a new path for a new store")
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise FileExistsError(f"{target} exists and is neither a store nor an empty folder; "
                                  "pick a new path for the store")
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_staging(target)
        staging = target.with_name(f".{target.name}.creating-{os.getpid()}")
        try:
            group = zarr.open_group(str(staging), mode="w-", zarr_format=3, attributes=attrs)
            _create_arrays(group, spec, n)
            if target.exists():
                target.rmdir()  # empty (checked above); os.replace cannot replace a folder
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cls.open(target)

    @classmethod
    def open(cls, path: str | os.PathLike[str], expect: StoreSpec | None = None,
             read_only: bool = False) -> LatentStore:
        """Open an existing store. With ``expect``, raise StoreMismatchError (naming every
        differing field) unless the store holds samples of exactly that spec."""
        if not cls.exists(path):
            raise FileNotFoundError(f"no latent store at {path}; create one with "
                                    "`facelatent sample --store PATH`")
        location = str(path) if _is_url(path) else Path(path)
        try:
            group = zarr.open_group(str(path), mode="r" if read_only else "r+", zarr_format=3,
                                    use_consolidated=False)
        except (ValueError, KeyError, TypeError, zarr.errors.BaseZarrError) as exc:
            raise FileFormatError(f"store {path}: its zarr.json cannot be read ({exc}); it is "
                                  "damaged or not a latent store") from None
        store = cls(group, location, read_only)
        if expect is not None:
            check_resume(f"store {path}", store.spec.resume_key(), expect.resume_key(),
                         "Resume or extend it with the store's settings, or write these samples "
                         "to a new store path.", StoreMismatchError)
        return store

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` holds a zarr group (a store, or something else in zarr)."""
        if _is_url(path):
            try:
                zarr.open_group(str(path), mode="r", zarr_format=3, use_consolidated=False)
            except (FileNotFoundError, KeyError, ValueError, zarr.errors.GroupNotFoundError):
                return False
            return True
        return (Path(path) / "zarr.json").is_file()

    # -- manifest and plan ----------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the root attributes (see the class docstring)."""
        return copy.deepcopy(self._attrs)

    @property
    def size(self) -> int:
        """Rows planned (the largest ``n`` this store was created or extended to)."""
        return int(self._attrs["n"])

    def num_shards(self, n: int | None = None) -> int:
        """Shards that ``n`` samples (default: :attr:`size`) take."""
        n = self.size if n is None else n
        return -(-n // self.spec.shard_size)

    def shard_rows(self, index: int, n: int | None = None) -> range:
        """Rows of shard ``index`` when the store holds ``n`` samples (default :attr:`size`)."""
        n = self.size if n is None else n
        if not 0 <= index < self.num_shards(n):
            raise ValueError(f"shard index must be in [0, {self.num_shards(n)}) for {n} samples, "
                             f"got {index}")
        start = index * self.spec.shard_size
        return range(start, min(start + self.spec.shard_size, n))

    def complete_shards(self) -> list[int]:
        """Indices of the shards whose every row is written, ascending."""
        return sorted(int(k) for k in self._attrs["shards"])

    def missing_shards(self, n: int | None = None) -> list[int]:
        """Shards to write so that the store holds ``n`` samples: absent ones, and a last shard
        recorded with fewer rows than ``n`` gives it (it was the end of a smaller run)."""
        n = self.size if n is None else n
        shards = self._attrs["shards"]
        return [i for i in range(self.num_shards(n))
                if str(i) not in shards or shards[str(i)]["rows"] != len(self.shard_rows(i, n))]

    def __len__(self) -> int:
        """Samples in complete shards (what the readers return)."""
        return sum(int(rec["rows"]) for rec in self._attrs["shards"].values())

    # -- writing --------------------------------------------------------------------------------
    def extend(self, n: int) -> None:
        """Plan ``n`` rows instead of :attr:`size` (n may not shrink it). Written shards stay."""
        self._check_writable()
        if n < self.size:
            raise ValueError(f"a store cannot shrink: it plans {self.size} samples, got n={n}")
        if n == self.size:
            return
        # Arrays first, the manifest's n last: a kill in between leaves arrays longer than n,
        # which nothing reads, and the next extend resizes them again.
        for name, (_, row_shape) in self.spec.arrays().items():
            self._group[name].resize((n, *row_shape))
        self._update(n=int(n))

    def write_rows(self, index: int, arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
        """Write every array of shard ``index`` (not yet recorded complete: see `record`);
        returns the sha256 of each array's rows, for the shard's record.

        ``arrays``: exactly the store's arrays (``seeds``, ``z``, ``w``, ``scores/<name>``,
        ``identity/<model>``), each ``[rows, ...]`` for the shard's rows; ``seeds`` must be
        the shard's own seeds. A shard already recorded is first un-recorded, so a rewrite
        killed halfway is redone rather than read.
        """
        self._check_writable()
        rows = self.shard_rows(index)
        expected = self.spec.arrays()
        if set(arrays) != set(expected):
            raise ValueError(f"write_shard needs exactly the arrays {sorted(expected)}, got "
                             f"{sorted(arrays)}")
        values: dict[str, np.ndarray] = {}
        for name, (dtype, row_shape) in expected.items():
            value = np.asarray(arrays[name])
            if value.shape != (len(rows), *row_shape):
                raise ValueError(f"shard {index} array {name!r} must have shape "
                                 f"{[len(rows), *row_shape]}, got {list(value.shape)}")
            values[name] = value.astype(dtype, copy=False)
        want_seeds = self.spec.seed_start + np.arange(rows.start, rows.stop, dtype=np.int64)
        if not np.array_equal(values["seeds"], want_seeds):
            raise ValueError(f"shard {index} must hold seeds {int(want_seeds[0])}.."
                             f"{int(want_seeds[-1])} in order; got other seeds")
        self.forget([index])
        for name, value in values.items():
            self._group[name][rows.start:rows.stop] = value
        return array_digests(values)

    def write_shard(self, index: int, arrays: Mapping[str, np.ndarray],
                    info: Mapping[str, Any] | None = None) -> None:
        """`write_rows`, then record shard ``index`` complete with ``info`` and the sha256 of
        each array's rows."""
        digests = self.write_rows(index, arrays)
        self.record(index, {"rows": len(self.shard_rows(index)), "completed": now(),
                            **copy.deepcopy(dict(info or {})), "sha256": digests})

    def record_run(self, entry: Mapping[str, Any]) -> None:
        """Append ``entry`` (command, time, version, n...) to the manifest's ``runs``."""
        self._check_writable()
        self._update(runs=[*self._attrs["runs"], copy.deepcopy(dict(entry))])

    @contextlib.contextmanager
    def writing(self) -> Iterator[LatentStore]:
        """Hold the store's writer lock (local stores) and re-read the manifest under it, so
        that what another process wrote before the lock is kept: a second writer fails at once
        instead of overwriting the manifest. The lock dies with the process, SIGKILL included."""
        self._check_writable()
        if self.lock_folder is None:
            self.reload()
            yield self
            return
        with writer_lock(self.lock_folder, "store"):
            # Temporary files that a killed writer left behind (zarr writes X.<hex>.partial,
            # then renames it to X); nothing reads them.
            for stale in self.lock_folder.rglob("*.partial"):
                stale.unlink(missing_ok=True)
            self.reload()
            yield self

    @property
    def lock_folder(self) -> Path | None:
        """The folder whose writer lock guards this store (None: a URL store, no lock)."""
        return None if isinstance(self.path, str) or sys.platform == "win32" else self.path

    # -- the ledger of done shards (facelatent.runs.ShardLedger) ---------------------------------
    def reload(self) -> None:
        """Read the manifest again from the store (another process may have written it)."""
        group = zarr.open_group(str(self.path), mode="r" if self.read_only else "r+",
                                zarr_format=3, use_consolidated=False)
        self._group = group
        self._attrs = group.attrs.asdict()

    def done(self) -> dict[int, dict[str, Any]]:
        """``{index: record}`` of the complete shards."""
        return {int(k): v for k, v in self._attrs["shards"].items()}

    def record(self, index: int, record: Mapping[str, Any]) -> None:
        """Mark shard ``index`` complete with ``record`` (it must hold ``rows``)."""
        self._check_writable()
        self._update(shards={**self._attrs["shards"], str(index): copy.deepcopy(dict(record))})

    def forget(self, indices: Iterable[int]) -> None:
        """Un-record shards, so that they are written again."""
        drop = {str(i) for i in indices} & set(self._attrs["shards"])
        if drop:
            self._check_writable()
            self._update(shards={k: v for k, v in self._attrs["shards"].items() if k not in drop})

    def _update(self, **changes: Any) -> None:
        changes["updated"] = now()
        self._group.update_attributes(changes)
        self._attrs.update(copy.deepcopy(changes))

    def _check_writable(self) -> None:
        if self.read_only:
            raise FacelatentError(f"store {self.path} was opened read-only")

    # -- reading and checking -------------------------------------------------------------------
    def _shard_values(self, name: str, index: int) -> np.ndarray:
        """The recorded rows of shard ``index`` of array ``name``, checked against the chunk's
        crc32c and the record's sha256; StoreCorruptError (naming the shard) when damaged."""
        value, problem = self._check(name, index, self._attrs["shards"][str(index)])
        if problem is not None:
            raise StoreCorruptError(f"store {self.path} is damaged: {problem}. "
                                    f"`facelatent store verify {self.path}` lists every damaged "
                                    "shard; rerun the store's `facelatent sample` command to "
                                    "rewrite them")
        return value

    def _check(self, name: str, index: int,
               record: Mapping[str, Any]) -> tuple[np.ndarray, ShardProblem | None]:
        """Array ``name``'s rows of shard ``index`` and what is wrong with them (or None)."""
        dtype, row_shape = self.spec.arrays()[name]
        start = index * self.spec.shard_size
        rows = range(start, start + int(record["rows"]))
        try:
            value = np.asarray(self._group[name][rows.start:rows.stop]).astype(dtype, copy=False)
        except Exception as exc:  # zarr raises ValueError on a bad checksum, codec errors else
            empty = np.empty((0, *row_shape), dtype)
            reason = ("fails its crc32c checksum (its chunk file was changed)"
                      if "checksum" in str(exc) else f"cannot be read ({exc})")
            return empty, ShardProblem(index, rows, name, reason)
        digests = record.get("sha256")
        if digests is not None:
            if array_digests({name: value})[name] != digests.get(name):
                return value, ShardProblem(index, rows, name, "its data does not match its "
                                           "checksum (a chunk file was changed or deleted)")
        elif name == "seeds" and not np.array_equal(
                value, self.spec.seed_start + np.arange(rows.start, rows.stop)):
            return value, ShardProblem(index, rows, name, "wrong seeds (a chunk file was "
                                                          "deleted?)")
        elif value.dtype.kind == "f" and np.isnan(value).all():
            return value, ShardProblem(index, rows, name, "all NaN, the fill value (a chunk "
                                                          "file was deleted?)")
        return value, None

    def verify(self, progress: Callable[[int], None] | None = None) -> list[ShardProblem]:
        """Read every array of every complete shard and check it: crc32c of each chunk, the
        sha256 recorded with the shard (format 2) or fill values (format 1). Returns one
        `ShardProblem` per damaged shard (empty: the store is intact); ``progress(rows)`` hears
        of each shard checked."""
        problems = []
        for index, record in sorted(self.done().items()):
            for name in self.spec.arrays():
                _, problem = self._check(name, index, record)
                if problem is not None:
                    problems.append(problem)
                    break
            if progress is not None:
                progress(int(record["rows"]))
        return problems

    def read(self, name: str) -> np.ndarray:
        """Rows of complete shards of array ``name`` (e.g. "z", "scores/age"), in seed order.

        Raises StoreCorruptError naming the shard when its data fails its checksums."""
        expected = self.spec.arrays()
        if name not in expected:
            raise ValueError(f"store {self.path} has no array {name!r}; it has "
                             f"{', '.join(expected)}")
        dtype, row_shape = expected[name]
        parts = [self._shard_values(name, i) for i in self.complete_shards()]
        if not parts:
            return np.empty((0, *row_shape), dtype=dtype)
        return np.concatenate(parts)

    def seeds(self) -> np.ndarray:
        """Seeds of the complete samples, int64 ``[N]``, ascending."""
        return self.read("seeds")

    def latents(self, space: str = "w") -> np.ndarray:
        """``z`` ``[N, z_dim]`` or ``w`` ``[N, w_dim]`` (float32) of the complete samples."""
        if space not in ("z", "w"):
            raise ValueError(f"space must be 'z' or 'w', got {space!r}")
        return self.read(space)

    def scores(self, name: str) -> np.ndarray:
        """Scores of attribute ``name``, float32 ``[N]`` (see facelatent.faces.ATTRIBUTES)."""
        if name not in self.spec.attributes:
            raise ValueError(f"store {self.path} has no scores for {name!r}; it has "
                             f"{', '.join(self.spec.attributes) or 'none (sampled unscored)'}")
        return self.read(f"scores/{name}")

    def identity(self, model: str = "sface") -> np.ndarray:
        """Unit identity embeddings from ``model``, float32 ``[N, 128]``."""
        if model not in self.spec.identity:
            raise ValueError(f"store {self.path} has no {model!r} embeddings; it has "
                             f"{', '.join(self.spec.identity) or 'none'}")
        return self.read(f"identity/{model}")

    def images(self) -> np.ndarray:
        """The kept renders, uint8 RGB ``[N, 3, S, S]`` (``S`` = ``spec.image_size``)."""
        if not self.spec.image_size:
            raise ValueError(f"store {self.path} keeps no images; sample a store with "
                             "--images SIZE (e.g. 256)")
        return self.read("images")

    def __repr__(self) -> str:
        return (f"LatentStore({str(self.path)!r}, generator={self.spec.generator!r}, "
                f"complete={len(self)}/{self.size})")


def _remove_dead_staging(target: Path) -> None:
    """Delete the staging folders of creations that were killed (their process is gone)."""
    for staging in target.parent.glob(f".{target.name}.creating-*"):
        pid = staging.name.rpartition("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False   # a staging folder of ours left by an earlier, failed create
    if sys.platform == "win32":
        return True    # os.kill(pid, 0) would terminate the process there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create_arrays(group: zarr.Group, spec: StoreSpec, n: int) -> None:
    for name, (dtype, row_shape) in spec.arrays().items():
        parent, _, leaf = name.rpartition("/")
        where = group.require_group(parent) if parent else group
        fill = {"i": -1, "u": 0}.get(dtype.kind, float("nan"))
        # zstd as zarr's default, then a crc32c of the compressed bytes: a damaged chunk fails
        # its checksum on every read instead of decoding to wrong numbers.
        where.create_array(leaf, shape=(n, *row_shape), chunks=(spec.shard_size, *row_shape),
                           dtype=dtype, fill_value=fill,
                           compressors=(ZstdCodec(level=0), Crc32cCodec()))
