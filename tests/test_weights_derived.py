"""Derived model files (the generator's cached w_avg): records, checks on load, `weights verify`.

A fake asset with a declared ``w_avg.npy`` in a FACELATENT_HOME under tmp_path; no network, no
real model. Defect 4 of issue 10: a w_avg.npy replaced by 5.0s was used by `generate` and
passed `weights verify`.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from facelatent import weights
from facelatent.cli import main
from facelatent.errors import WeightsError
from facelatent.generators import StaleCacheWarning, cached_w_avg
from facelatent.weights import Derived, Member, ModelAsset, Source

NET = b"fake mapping network" * 50
W_DIM = 8
TRUE_W_AVG = np.linspace(-1, 1, W_DIM, dtype=np.float32)
ASSET = ModelAsset(
    name="fake-gan",
    source=Source("pypi", "fake-gan", "1.0"),
    members=(Member("mapping.bin", "fake_gan/mapping.bin", hashlib.sha256(NET).hexdigest()),),
    licence="test",
    description="a fake generator",
    derived=(Derived("w_avg.npy", ("mapping.bin",), "mean mapping output"),),
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("FACELATENT_HOME", str(root))
    monkeypatch.setattr(weights, "MANIFEST", {ASSET.name: ASSET})
    monkeypatch.setattr(weights, "_VERIFIED", set())
    folder = root / "weights" / ASSET.name
    folder.mkdir(parents=True)
    (folder / "mapping.bin").write_bytes(NET)
    return folder


class Compute:
    """Stands in for estimate_w_avg: returns ``value`` and records each (samples, seed) call."""

    def __init__(self, value: np.ndarray = TRUE_W_AVG) -> None:
        self.value = value
        self.calls: list[tuple[int, int]] = []

    def __call__(self, samples: int, seed: int) -> torch.Tensor:
        self.calls.append((samples, seed))
        return torch.from_numpy(self.value.astype(np.float64))  # float64: returned as float32


def load(compute: Callable[[int, int], torch.Tensor], **kwargs: int) -> torch.Tensor:
    return cached_w_avg("fake-gan", compute, W_DIM, **kwargs)


def test_computed_once_then_read_with_its_record(home: Path) -> None:
    compute = Compute()
    first = load(compute, samples=500, seed=3)
    second = load(compute, samples=500, seed=3)
    assert compute.calls == [(500, 3)]
    assert first.dtype == second.dtype == torch.float32
    assert torch.equal(first, second) and torch.equal(first, torch.from_numpy(TRUE_W_AVG))
    record = json.loads((home / "w_avg.npy.record.json").read_text())
    assert record["format"] == "facelatent.derived" and record["format_version"] == 1
    assert record["sha256"] == hashlib.sha256((home / "w_avg.npy").read_bytes()).hexdigest()
    assert record["made_from"] == {"mapping.bin": ASSET.members[0].sha256}
    assert record["recipe"] == {"samples": 500, "seed": 3}
    assert sorted(p.name for p in home.iterdir()) == [  # no temporary file left
        "mapping.bin", "w_avg.npy", "w_avg.npy.record.json"]


def _npy(value: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, value)
    return buf.getvalue()


def _fives(home: Path) -> None:  # the defect's reproduction: right shape, wrong values
    np.save(home / "w_avg.npy", np.full(W_DIM, 5.0, dtype=np.float32))


def _wrong_length(home: Path) -> None:
    np.save(home / "w_avg.npy", np.zeros(W_DIM - 1, dtype=np.float32))


def _nan(home: Path) -> None:
    np.save(home / "w_avg.npy", np.full(W_DIM, np.nan, dtype=np.float32))


def _empty(home: Path) -> None:
    (home / "w_avg.npy").write_bytes(b"")


def _no_record(home: Path) -> None:  # e.g. a cache written by facelatent 0.1
    (home / "w_avg.npy.record.json").unlink()


def _garbage_record(home: Path) -> None:
    (home / "w_avg.npy.record.json").write_text("{not json")


def _other_recipe(home: Path) -> None:
    path = home / "w_avg.npy.record.json"
    record = json.loads(path.read_text())
    record["recipe"]["samples"] = 10
    path.write_text(json.dumps(record))


def _other_model_files(home: Path) -> None:
    path = home / "w_avg.npy.record.json"
    record = json.loads(path.read_text())
    record["made_from"]["mapping.bin"] = "0" * 64
    path.write_text(json.dumps(record))


BREAKAGES = {"fives": (_fives, "changed after it was made"),
             "511-long": (_wrong_length, "changed after it was made"),
             "nan": (_nan, "changed after it was made"),
             "empty": (_empty, "changed after it was made"),
             "no record": (_no_record, "record w_avg.npy.record.json is missing or unreadable"),
             "garbage record": (_garbage_record, "missing or unreadable"),
             "other recipe": (_other_recipe, "made with {'samples': 10, 'seed': 0}"),
             "other model files": (_other_model_files, "made from other model files")}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_cache_is_never_used(home: Path, breakage: str) -> None:
    """Defect 4: the cached value is used only if it matches its record."""
    load(Compute())
    breaks, reason = BREAKAGES[breakage]
    breaks(home)
    compute = Compute()
    with pytest.warns(StaleCacheWarning, match=f"w_avg.npy: .*{reason}.*computing it again"):
        value = load(compute)
    assert compute.calls == [(100_000, 0)]
    assert torch.equal(value, torch.from_numpy(TRUE_W_AVG))
    assert weights.check_derived("fake-gan", "w_avg.npy", {"samples": 100_000, "seed": 0}) is None
    assert np.array_equal(np.load(home / "w_avg.npy"), TRUE_W_AVG)  # repaired on disk


@pytest.mark.parametrize("bad", [np.zeros(W_DIM - 1, np.float32),
                                 np.full(W_DIM, np.nan, np.float32)], ids=["511-long", "nan"])
def test_a_bad_value_with_a_matching_record_is_not_used(home: Path, bad: np.ndarray) -> None:
    """Even a file whose record was rewritten to match it is checked for shape and finiteness."""
    weights.write_derived("fake-gan", "w_avg.npy", lambda tmp: tmp.write_bytes(_npy(bad)),
                          {"samples": 100_000, "seed": 0})
    compute = Compute()
    with pytest.warns(StaleCacheWarning, match="has shape \\[7\\], expected \\[8\\]|NaN"):
        assert torch.equal(load(compute), torch.from_numpy(TRUE_W_AVG))
    assert len(compute.calls) == 1


@pytest.mark.parametrize("value", [np.full(W_DIM, np.inf), np.zeros(W_DIM + 1)],
                         ids=["inf", "wrong-length"])
def test_a_bad_computed_value_is_an_error_and_not_cached(home: Path, value: np.ndarray) -> None:
    with pytest.raises(WeightsError, match="w_avg computed for 'fake-gan' is unusable: .*"
                                           "facelatent weights verify fake-gan"):
        load(Compute(value))
    assert not (home / "w_avg.npy").exists()


def test_verify_checks_and_removes_a_tampered_w_avg(home: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Defect 4: `weights verify` said all was well with a w_avg.npy of 5.0s."""
    assert weights.verify() == {"fake-gan": {"mapping.bin": "ok", "w_avg.npy": "not made yet"}}
    assert main(["weights", "verify"]) == 0
    capsys.readouterr()

    load(Compute())
    assert weights.verify()["fake-gan"]["w_avg.npy"] == "ok"
    _fives(home)
    assert main(["weights", "verify"]) == 1
    captured = capsys.readouterr()
    assert ("fake-gan  w_avg.npy    removed: it changed after it was made (its sha256 is not the "
            "recorded one); made again on next use") in captured.out
    assert captured.err.startswith("removed fake-gan/w_avg.npy: computed from the model files")
    assert "weights fetch" not in captured.err  # the model files themselves are fine
    assert sorted(p.name for p in home.iterdir()) == ["mapping.bin"]
    assert main(["weights", "verify", "--json"]) == 0  # nothing wrong any more
    assert json.loads(capsys.readouterr().out)["fake-gan"]["w_avg.npy"] == "not made yet"


def test_derived_declarations_are_checked() -> None:
    member = ASSET.members[0]
    with pytest.raises(ValueError, match="must be made from members of the asset"):
        ModelAsset("x", ASSET.source, (member,), "l", "d",
                   derived=(Derived("w_avg.npy", ("nothing.bin",), "d"),))
    with pytest.raises(ValueError, match="bare file name that is not one of its members"):
        ModelAsset("x", ASSET.source, (member,), "l", "d",
                   derived=(Derived("mapping.bin", ("mapping.bin",), "d"),))
    with pytest.raises(WeightsError, match="has no derived file 'w.npy'; its derived "
                                           "files are: w_avg.npy"):
        ASSET.derived_file("w.npy")
