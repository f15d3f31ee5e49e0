"""The face-model registry (facelatent.faces.registry) agrees with the weights manifest, with the
loaders' code and with the attribute table; `facelatent faces list` shows it."""

from __future__ import annotations

import importlib

import pytest
import torch

from facelatent import weights
from facelatent.faces import registry
from facelatent.faces.registry import ATTRIBUTES, MODELS, REFERENCE_ASSETS
from facelatent.generators import available_generators


def test_every_manifest_asset_is_a_face_model_a_generator_or_a_declared_reference() -> None:
    used = {spec.asset for spec in MODELS.values()}
    generators = set(available_generators()) & set(weights.MANIFEST)
    assert used <= set(weights.MANIFEST), used - set(weights.MANIFEST)
    assert set(REFERENCE_ASSETS) <= set(weights.MANIFEST)
    # Each asset has exactly one role; none is left over.
    roles = [used, generators, set(REFERENCE_ASSETS)]
    assert sum(len(r) for r in roles) == len(set().union(*roles))
    assert set().union(*roles) == set(weights.MANIFEST)


class _Requested(Exception):
    pass


@pytest.mark.parametrize("name", list(MODELS))
def test_each_loader_reads_files_of_the_asset_its_spec_names(name: str, monkeypatch) -> None:
    """The loader's own code asks for (asset, file): it must be the spec's asset, and a file the
    manifest lists for it. Caught at the first request, so no model file is needed."""
    asked: list[tuple[str, str]] = []

    def record(asset: str, filename: str) -> object:
        asked.append((asset, filename))
        raise _Requested

    spec = MODELS[name]
    module = importlib.import_module(spec.architecture.partition(":")[0])
    monkeypatch.setattr(weights, "file_path", record)
    if hasattr(module, "file_path"):
        monkeypatch.setattr(module, "file_path", record)
    with pytest.raises(_Requested):
        spec.load()
    asset, filename = asked[0]
    assert asset == spec.asset
    assert filename in {m.filename for m in weights.MANIFEST[asset].members}


def test_attributes_belong_to_scoring_models_and_every_scorer_gives_its_attributes() -> None:
    for attr in ATTRIBUTES.values():
        assert MODELS[attr.model].scorer is not None, attr
    assert set(registry.DEFAULT_ATTRIBUTES) <= set(ATTRIBUTES)
    for group in registry.GROUPS.values():
        assert set(group) <= set(ATTRIBUTES)
    for spec in MODELS.values():
        # A model scores attributes exactly when it has a scorer, and the scorer exists.
        assert (spec.scorer is None) == (not spec.scores), spec.name
        if spec.scorer:
            assert callable(spec.scorer_fn())
    assert registry.IDENTITY_MODELS == ("sface", "dlib")


def test_store_attribute_order_is_unchanged() -> None:
    # Stores written by earlier releases keep their columns in this order.
    assert registry.STORE_ATTRIBUTES[:5] == ("age", "gender", "gender_logit", "smile",
                                             "smile_logit")
    assert registry.STORE_ATTRIBUTES[-6:] == ("yaw", "pitch", "roll", "mouth_open", "eyes_open",
                                              "eyeglasses")
    assert len(registry.STORE_ATTRIBUTES) == 18


def test_random_loaders_cover_every_model_but_the_detector_and_are_seeded() -> None:
    loaders = registry.random_face_loaders(seed=3)
    assert set(loaders) == set(MODELS) - {"yunet"}
    a = next(iter(loaders["age"]().parameters()))
    b = next(iter(registry.random_face_loaders(seed=3)["age"]().parameters()))
    c = next(iter(registry.random_face_loaders(seed=4)["age"]().parameters()))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="yunet.*no random"):
        MODELS["yunet"].random()
