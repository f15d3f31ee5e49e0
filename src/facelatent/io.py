"""Every file facelatent writes or reads back, through one layer.

- **Atomic writes.** `atomic_path` yields a temporary name beside the target and renames it over
  the target only when the block finishes: a reader never sees half a file, and a process killed
  mid-write leaves the old file (or none) in place. `write_bytes`, `write_json` and `save_npz`
  are built on it.
- **A header on every file.** `write_json` and `save_npz` take a ``format`` name (e.g.
  ``"facelatent.boundary"``) and write it with ``format_version``; the readers check both, so a
  file of another kind, or from a newer facelatent, is refused with a message that says so.
- **Safe reads.** `read_json` and `load_npz` turn every way a file can be malformed (missing,
  a folder, empty, truncated, not a zip, pickled objects, a member too large, bad JSON) into one
  `FileFormatError` that names the file. `load_npz` reads each member's header before its data,
  so a small compressed archive that claims a huge array is refused before anything is allocated.
- **The writer lock.** `writer_lock(folder)` holds an exclusive `flock` on ``folder/.writer.lock``
  for the life of a block: a second writer fails at once with a message instead of interleaving
  with the first; the lock dies with its process, SIGKILL included.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from facelatent.errors import FacelatentError, FileFormatError

__all__ = [
    "LOCK_NAME",
    "MAX_NPZ_ELEMENTS",
    "FileFormatError",
    "atomic_path",
    "check_header",
    "jsonable",
    "jsonl_appender",
    "load_npy",
    "load_npz",
    "open_checked",
    "read_json",
    "read_jsonl",
    "save_npz",
    "write_bytes",
    "write_json",
    "writer_lock",
]

LOCK_NAME = ".writer.lock"
MAX_NPZ_ELEMENTS = 50_000_000     # default cap per .npz member (200 MB of float32)
MAX_JSON_BYTES = 64 * 2**20       # no manifest we write comes near this


# -- writing ------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit rename it onto ``path``.

    The parent folder is created. On an exception the temporary file is removed and ``path``
    keeps its old contents. The temporary name keeps the suffix, so writers that pick a format
    from the suffix (PIL, pyarrow) still do.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any], *,
               format: str | None = None, version: int = 1) -> Path:
    """Write ``data`` as indented JSON, atomically. With ``format``, the object starts with
    ``"format"`` and ``"format_version"`` keys. NaN becomes null (`jsonable`)."""
    body = dict(data)
    if format is not None:
        body = {"format": format, "format_version": int(version),
                **{k: v for k, v in body.items() if k not in ("format", "format_version")}}
    text = json.dumps(jsonable(body), indent=2, allow_nan=False)
    return write_bytes(path, (text + "\n").encode("utf-8"))


@contextlib.contextmanager
def jsonl_appender(path: str | os.PathLike[str],
                   keep: Callable[[dict[str, Any]], bool] | None = None,
                   ) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A training log: yields ``log(line)``, which appends ``line`` as one JSON line and flushes
    (a kill loses at most the line being written). ``keep``: first drop the existing lines it
    rejects, atomically, e.g. those a killed run wrote after its last checkpoint, so a resumed
    run logs each step once."""
    path = Path(path)
    if keep is not None and path.exists():
        kept = [line for line in read_jsonl(path) if keep(line)]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(json.dumps(line) + "\n" for line in kept), encoding="utf-8")
    with open(path, "a", encoding="utf-8") as fh:
        def log(line: dict[str, Any]) -> None:
            fh.write(json.dumps(line) + "\n")
            fh.flush()
        yield log


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The lines of a JSON-lines log as dicts (a line cut short by a kill is skipped)."""
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            yield json.loads(raw)
        except json.JSONDecodeError:
            continue


def save_npz(path: str | os.PathLike[str], arrays: Mapping[str, Any], *, format: str,
             version: int = 1, compressed: bool = False) -> Path:
    """Write ``arrays`` to an ``.npz`` atomically, with ``format`` and ``format_version``
    members first; returns the path. Values must be arrays or numpy scalars (no objects)."""
    members = {"format": np.str_(format), "format_version": np.int64(version), **arrays}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **members)
    return Path(path)


@contextlib.contextmanager
def writer_lock(folder: str | os.PathLike[str], what: str = "folder") -> Iterator[None]:
    """Hold the exclusive writer lock of ``folder`` (``what`` names it in the message: "store
    runs/ffhq is being written by another process ..."). No-op on Windows."""
    if sys.platform == "win32":
        yield
        return
    import fcntl

    root = Path(folder)
    try:
        fh = open(root / LOCK_NAME, "a+")
    except OSError as exc:
        raise FacelatentError(f"cannot lock {what} {root} for writing: {exc.strerror or exc}")
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FacelatentError(f"{what} {root} is being written by another process; wait "
                                  "for it to finish, or stop it") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- reading ------------------------------------------------------------------------------------
def open_checked(path: Path, kind: str) -> IO[bytes]:
    """Open ``path`` for reading in binary, or raise one line that names it, what is wrong and
    what was expected (``kind``, e.g. "an image"): `FileNotFoundError` for a missing file,
    `FileFormatError` for a folder or an unreadable one."""
    if path.is_dir():
        raise FileFormatError(f"{path} is a folder; expected {kind}")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path} (expected {kind})") from None
    except OSError as exc:  # permission, not-a-directory, I/O
        raise FileFormatError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_json(path: str | os.PathLike[str], *, format: str | None = None,
              max_version: int | None = None, kind: str = "a JSON file") -> dict[str, Any]:
    """The JSON object in ``path``. With ``format``, the object's ``"format"`` must equal it and
    its ``"format_version"`` be at most ``max_version``. Anything else: `FileFormatError`."""
    path = Path(path)
    with open_checked(path, kind) as fh:
        raw = fh.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise FileFormatError(f"{path} is over {MAX_JSON_BYTES // 2**20} MB; expected {kind}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{path} is not valid JSON ({exc}); expected {kind}") from None
    if not isinstance(data, dict):
        raise FileFormatError(f"{path} holds a JSON {type(data).__name__}, not an object; "
                              f"expected {kind}")
    if format is not None:
        check_header(path, data.get("format"), data.get("format_version"), format, max_version,
                     kind)
    return data


def check_header(path: Path, found: Any, version: Any, format: str, max_version: int | None,
                 kind: str) -> None:
    """Raise `FileFormatError` unless ``found`` is ``format`` and ``version`` is readable."""
    if found != format:
        what = f"a {found!r} file" if isinstance(found, str) else "no facelatent format header"
        raise FileFormatError(f"{path} has {what}; expected {kind} ({format!r})")
    if max_version is not None:
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise FileFormatError(f"{path} has no valid format_version") from None
        if number > max_version:
            from facelatent import __version__

            raise FileFormatError(f"{path} is {kind} of format version {number}; this "
                                  f"facelatent ({__version__}) reads up to {max_version}: "
                                  "upgrade facelatent")


def _npz_kind_hint(path: Path, head: bytes) -> str:
    if not head:
        return "it is empty"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array, not an .npz archive"
    if head.startswith(b"PK"):
        return "it is a damaged or truncated zip archive"
    if head[:1] == b"\x80":
        return "it is a Python pickle, which facelatent never loads"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "it is a text file"
    return "it is not a zip archive"


def load_npz(path: str | os.PathLike[str], *, format: str | None = None,
             max_version: int | None = None, max_elements: int = MAX_NPZ_ELEMENTS,
             kind: str = "an .npz file") -> dict[str, np.ndarray]:
    """Every member of the ``.npz`` at ``path`` as arrays, without pickles, checked first.

    Each member's header (dtype, shape) is read before its data: object arrays and members of
    more than ``max_elements`` elements are refused before any allocation. With ``format``, the
    archive must carry that ``format`` member (see `save_npz`), and a ``format_version`` of at
    most ``max_version``; the header members are not returned. Every failure is one
    `FileFormatError` (or `FileNotFoundError`) naming the file.
    """
    path = Path(path)
    with open_checked(path, kind) as fh:
        blob = fh.read()
    try:
        archive = zipfile.ZipFile(io.BytesIO(blob))
    except zipfile.BadZipFile:
        raise FileFormatError(f"{path} is not an .npz archive: {_npz_kind_hint(path, blob[:256])}"
                              f"; expected {kind}") from None
    out: dict[str, np.ndarray] = {}
    with archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            try:
                with archive.open(info) as member:
                    out[name] = _read_npy(member, f"{path}: member {name!r}", max_elements, kind)
            except (zipfile.BadZipFile, KeyError) as exc:
                raise FileFormatError(f"{path}: member {name!r} is damaged ({exc}); expected "
                                      f"{kind}") from None
    if format is not None:
        found = str(out.pop("format")) if "format" in out else None
        version = out.pop("format_version", None)
        check_header(path, found, None if version is None else version.item(), format,
                     max_version, kind)
    return out


def load_npy(path: str | os.PathLike[str], *, max_elements: int = MAX_NPZ_ELEMENTS,
             kind: str = "an .npy file") -> np.ndarray:
    """The array in the ``.npy`` file at ``path``, read as `load_npz` reads each member: header
    first, no pickles, at most ``max_elements``; every failure one `FileFormatError`."""
    path = Path(path)
    with open_checked(path, kind) as fh:
        return _read_npy(fh, str(path), max_elements, kind)


def _read_npy(stream: IO[bytes], where: str, max_elements: int, kind: str) -> np.ndarray:
    """One ``.npy`` array from a seekable ``stream``, its header checked before its data.
    ``where`` names it in messages ("PATH" or "PATH: member 'x'")."""
    try:
        start = stream.tell()
        version = np.lib.format.read_magic(stream)
        shape, dtype = _read_header(stream, version)
        if dtype.hasobject:
            raise FileFormatError(f"{where} holds Python objects (pickled data), which "
                                  f"facelatent never loads; expected {kind}")
        count = math.prod(shape)
        if count > max_elements:
            raise FileFormatError(f"{where} has shape {list(shape)} ({count:,} elements), over "
                                  f"the limit of {max_elements:,}; expected {kind}")
        stream.seek(start)
        return np.lib.format.read_array(stream, allow_pickle=False)
    except FileFormatError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise FileFormatError(f"{where} is damaged ({exc}); expected {kind}") from None


def _read_header(member: IO[bytes], version: tuple[int, int]) -> tuple[tuple[int, ...], np.dtype]:
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(int(v) for v in shape), dtype


# -- values -------------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """Numpy scalars and arrays, paths and non-finite floats made JSON-safe (NaN -> null)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
