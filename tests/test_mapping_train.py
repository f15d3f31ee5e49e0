"""The mapping's networks, checkpoints and training: resumable, deterministic, refusing bad files.

Everything runs on the tiny random generator and random-weight face models: what is tested is
the mechanics (shapes, resume, errors), not the quality of a real mapping (bench/ and the
README have those figures)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from facelatent.cli import main
from facelatent.errors import FileFormatError
from facelatent.faces.analysis import FaceAnalyzer, random_face_loaders
from facelatent.generators import get_generator
from facelatent.generators.mobilestylegan import MobileStyleGAN
from facelatent.inversion import Inverter
from facelatent.latents.fill import SampleSettings, sample_to_store
from facelatent.latents.store import LatentStore
from facelatent.mapping import Mapper, MapperConfig, build, load_checkpoint
from facelatent.mapping.data import load_training_data
from facelatent.mapping.proxies import PROXY_ATTRIBUTES
from facelatent.mapping.train import TrainSettings, read_log, train_mapping
from facelatent.runs.models import Models
from facelatent.runs.sharded import ResumeMismatchError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "mobilestylegan-tiny"


@pytest.fixture(scope="module")
def G():
    return get_generator(TINY)


@pytest.fixture(scope="module")
def analyzer():
    return FaceAnalyzer(loaders=random_face_loaders())


@pytest.fixture(scope="module")
def store(tmp_path_factory, G, analyzer) -> Path:
    path = tmp_path_factory.mktemp("mapping") / "store"
    settings = SampleSettings(TINY, identity=("sface", "dlib"), image_size=64, batch=8,
                              attributes=PROXY_ATTRIBUTES)
    sample_to_store(path, 48, settings, shard_size=16, models=Models(G, analyzer))
    return path


@pytest.fixture(scope="module")
def data(store):
    return load_training_data(store, "sface", holdout=8)


def config(G, **kw) -> MapperConfig:
    return MapperConfig(w_dim=G.w_dim, num_ws=G.num_ws, hidden=(48, 48), attr_size=64,
                        attr_init="random", **kw)


def regress(**kw) -> TrainSettings:
    return TrainSettings(**{"steps": 6, "batch": 4, "checkpoint_every": 2, "validate_every": 3,
                            "proxy_steps": 20, **kw})


def e2e(**kw) -> TrainSettings:
    return TrainSettings(**{"stage": "e2e", "steps": 6, "batch": 3, "loss_size": 64,
                            "checkpoint_every": 2, "validate_every": 3, **kw})


def params(path: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    out = {f"model.{k}": v for k, v in ckpt.model.state_dict().items()}
    if ckpt.disc is not None:
        out.update({f"disc.{k}": v for k, v in ckpt.disc.state_dict().items()})
    return out


# -- the store keeps the renders ----------------------------------------------------------------
def test_store_keeps_renders_that_match_the_generator(store, G) -> None:
    s = LatentStore.open(store)
    images = s.images()
    assert images.shape == (48, 3, 64, 64) and images.dtype == np.uint8
    with torch.no_grad():
        again = G.synthesis(torch.from_numpy(s.latents("w")[:2]))
    expected = ((again.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert np.abs(images[:2].astype(int) - expected.astype(int)).max() <= 1
    assert "image_size" in json.dumps(s.manifest)
    assert s.verify() == []


def test_a_store_without_renders_says_how_to_make_one(tmp_path, G, analyzer) -> None:
    settings = SampleSettings(TINY, identity=("sface",), batch=8)
    sample_to_store(tmp_path / "s", 16, settings, models=Models(G, analyzer))
    assert "image_size" not in json.dumps(LatentStore.open(tmp_path / "s").manifest)
    with pytest.raises(ValueError, match="--images 256"):
        load_training_data(tmp_path / "s")


# -- networks and checkpoints --------------------------------------------------------------------
def test_mapping_net_shapes_and_whitening(G) -> None:
    net, disc = build(config(G))
    net.set_w_statistics(torch.full((G.w_dim,), 2.0), torch.full((G.w_dim,), 3.0))
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    ids = torch.nn.functional.normalize(torch.randn(3, 128), dim=1)
    w = net(ids, images)
    assert w.shape == (3, G.w_dim)
    assert torch.allclose(net.whiten(w) * 3 + 2, w, atol=1e-5)
    assert disc(w).shape == (3,)
    wplus, _ = build(config(G, head="wplus"))
    assert wplus(ids, images).shape == (3, G.num_ws, G.w_dim)
    # batched equals one by one
    one = torch.cat([net(ids[i:i + 1], images[i:i + 1]) for i in range(3)])
    assert torch.allclose(one, w, atol=1e-5)


def test_faceapi_init_copies_the_landmark_trunk(G, analyzer) -> None:
    landmarks = analyzer.model("landmarks68")
    net, _ = build(replace(config(G), attr_init="faceapi"), landmarks)
    for a, b in zip(net.encoder.dense.parameters(), landmarks.dense.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="face-api"):
        build(replace(config(G), attr_init="faceapi"))


def test_checkpoint_round_trip_gives_the_same_mapper(tmp_path, G, analyzer, data) -> None:
    train_mapping(data, tmp_path, regress(steps=2), config=config(G), generator=G,
                  analyzer=analyzer)
    a = Mapper.from_checkpoint(tmp_path / "checkpoint.npz", analyzer=analyzer)
    b = Mapper.from_checkpoint(tmp_path / "checkpoint.npz", analyzer=analyzer)
    faces = G.synthesis(G.mapping(torch.randn(2, G.z_dim))).detach()
    assert torch.equal(a.encode(faces), b.encode(faces))
    assert a.swap(faces, faces.flip(0)).shape == (2, G.w_dim)
    assert a.step == 2 and a.stage == "regress"
    a.check_generator(G)
    with pytest.raises(ValueError, match="trained for"):
        a.check_generator(MobileStyleGAN(replace(G.cfg, w_dim=16, z_dim=16)))


def test_damaged_or_foreign_checkpoints_give_one_line(tmp_path, G, analyzer, data) -> None:
    train_mapping(data, tmp_path / "run", regress(steps=2), config=config(G), generator=G,
                  analyzer=analyzer)
    good = (tmp_path / "run" / "checkpoint.npz").read_bytes()

    def refused(blob: bytes, match: str) -> None:
        path = tmp_path / "bad.npz"
        path.write_bytes(blob)
        with pytest.raises(FileFormatError, match=match) as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value)

    refused(b"hello", "not an .npz")
    refused(good[: len(good) // 2], "not an .npz|damaged")
    np.savez(tmp_path / "other.npz", format=np.str_("facelatent.boundary"),
             format_version=np.int64(1), normal=np.zeros(3))
    refused((tmp_path / "other.npz").read_bytes(), "'facelatent.boundary'")
    # a tensor of another shape, a missing one, a NaN one
    members = dict(np.load(tmp_path / "run" / "checkpoint.npz"))
    key = next(k for k in members if k.startswith("model/mlp.layers.0.weight"))
    for change, match in ((lambda m: m.__setitem__(key, m[key][:, :3]), "has shape"),
                          (lambda m: m.pop(key), "missing"),
                          (lambda m: m.__setitem__(key, m[key] * np.nan), "NaN")):
        edited = dict(members)
        change(edited)
        np.savez(tmp_path / "edited.npz", **edited)
        refused((tmp_path / "edited.npz").read_bytes(), match)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.npz")


def test_checkpoints_hold_no_pickles(tmp_path, G, analyzer, data) -> None:
    train_mapping(data, tmp_path, regress(steps=2), config=config(G), generator=G,
                  analyzer=analyzer)
    with zipfile.ZipFile(tmp_path / "checkpoint.npz") as zf:
        for name in zf.namelist():
            with zf.open(name) as fh:
                header = fh.read(128)
            assert b"'descr': '|O'" not in header, name


# -- training ------------------------------------------------------------------------------------
class Killed(Exception):
    pass


def killed_after(monkeypatch, steps: int) -> None:
    """Make the run die (like a kill) once ``steps`` steps have run in this call."""
    from facelatent.mapping import train as T

    original = T._Run.step
    count = {"n": 0}

    def step(self, i):
        if count["n"] == steps:
            raise Killed()
        count["n"] += 1
        return original(self, i)

    monkeypatch.setattr(T._Run, "step", step)


@pytest.mark.parametrize("stage", ["regress", "e2e"])
def test_a_killed_run_resumes_to_the_same_state(tmp_path, monkeypatch, G, analyzer, data,
                                                stage) -> None:
    def first(out: Path) -> None:
        if stage == "e2e":
            train_mapping(data, out, regress(steps=2), config=config(G), generator=G,
                          analyzer=analyzer)

    settings = regress() if stage == "regress" else e2e()
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    first(straight)
    train_mapping(data, straight, settings, config=config(G), generator=G, analyzer=analyzer)
    first(broken)
    with monkeypatch.context() as m:
        killed_after(m, 3)          # dies after step 3; the last checkpoint is at step 2
        with pytest.raises(Killed):
            train_mapping(data, broken, settings, config=config(G), generator=G,
                          analyzer=analyzer)
    assert load_checkpoint(broken / "checkpoint.npz").step == 2
    report = train_mapping(data, broken, settings, config=config(G), generator=G,
                           analyzer=analyzer)
    assert report.action == "resumed" and report.steps_run == 4
    a, b = params(straight / "checkpoint.npz"), params(broken / "checkpoint.npz")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [line["step"] for line in read_log(broken / "log.jsonl")
             if line["stage"] == stage and "loss" in line]
    assert steps == list(range(1, 7))        # every step logged once
    assert train_mapping(data, broken, settings, generator=G,
                         analyzer=analyzer).action == "complete"


def test_resuming_with_other_settings_or_data_is_refused(tmp_path, G, analyzer, data, store) -> None:
    train_mapping(data, tmp_path, regress(steps=2), config=config(G), generator=G,
                  analyzer=analyzer)
    with pytest.raises(ResumeMismatchError, match="lr"):
        train_mapping(data, tmp_path, regress(steps=4, lr=1e-2), generator=G, analyzer=analyzer)
    other = load_training_data(store, "sface", holdout=4)
    with pytest.raises(ResumeMismatchError, match="holdout"):
        train_mapping(other, tmp_path, regress(steps=4), generator=G, analyzer=analyzer)
    # a larger --steps extends; the bookkeeping may change
    report = train_mapping(data, tmp_path, regress(steps=4, checkpoint_every=1), generator=G,
                           analyzer=analyzer)
    assert report.step == 4 and report.steps_run == 2


def test_stages_run_in_order(tmp_path, G, analyzer, data) -> None:
    with pytest.raises(ValueError, match="regress stage first"):
        train_mapping(data, tmp_path, e2e(), generator=G, analyzer=analyzer)
    train_mapping(data, tmp_path, regress(steps=2), config=config(G), generator=G,
                  analyzer=analyzer)
    # an unfinished regress stage (planned 4, at 2) cannot start e2e
    from facelatent.mapping import checkpoint as C

    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    ckpt.settings["steps"] = 4
    C.save_checkpoint(tmp_path / "checkpoint.npz", ckpt)
    with pytest.raises(ValueError, match="finish it first"):
        train_mapping(data, tmp_path, e2e(), generator=G, analyzer=analyzer)
    train_mapping(data, tmp_path, regress(steps=4), generator=G, analyzer=analyzer)
    report = train_mapping(data, tmp_path, e2e(steps=3), generator=G, analyzer=analyzer)
    assert report.action == "started from regress" and report.step == 3
    assert (tmp_path / "regress.npz").exists()
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.stage == "e2e" and ckpt.history[0]["steps"] == 4
    terms = [line for line in read_log(tmp_path / "log.jsonl") if line["stage"] == "e2e"
             and "loss" in line]
    assert [t["cross"] for t in terms] == [False, False, True]
    assert "reconstruction" in terms[0] and "reconstruction" not in terms[2]
    assert {"identity", "landmarks", "adversarial", "d_loss", "r1"} <= set(terms[2])


def test_regression_learns_the_known_w(tmp_path, G, analyzer, data) -> None:
    # Random face models give identity codes that say little about w; here the codes are a
    # fixed projection of each face's w, so a working training must learn w from them, and
    # generalise to the held-out faces.
    w = (data.w - data.w.mean(0)) / data.w.std(0)
    codes = torch.nn.functional.normalize(w @ torch.randn(G.w_dim, 128,
                                          generator=torch.Generator().manual_seed(0)), dim=1)
    informative = replace(data, id_codes=codes)
    report = train_mapping(informative, tmp_path, regress(steps=80, batch=16, lr=3e-3,
                                                          validate_every=80, cross_every=0,
                                                          checkpoint_every=80),
                           config=config(G), generator=G, analyzer=analyzer)
    losses = [line["loss"] for line in read_log(tmp_path / "log.jsonl") if "loss" in line]
    # whitened MSE starts near 1 (the mean face) and must fall, on training and held-out faces
    assert np.mean(losses[:10]) > 0.8
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    assert report.validation["val_latent"] < 0.9


def test_regress_cross_steps_ask_the_latent_proxy(tmp_path, G, analyzer, data) -> None:
    train_mapping(data, tmp_path, regress(steps=3), config=config(G), generator=G,
                  analyzer=analyzer)
    lines = list(read_log(tmp_path / "log.jsonl"))
    assert "proxy_identity_cosine" in lines[0] and lines[0]["step"] == 0
    steps = [line for line in lines if "loss" in line]
    assert [line["cross"] for line in steps] == [False, False, True]
    assert {"proxy_identity", "proxy_attributes", "adversarial", "d_loss"} <= set(steps[2])
    assert "latent" in steps[0] and "proxy_identity" not in steps[0]
    from facelatent.mapping.proxies import load_proxy

    fit = load_proxy(tmp_path / "proxy.npz")
    assert fit.proxy.attributes == PROXY_ATTRIBUTES
    ids, attrs = fit.proxy(data.w[:3])
    assert torch.allclose(ids.norm(dim=1), torch.ones(3)) and attrs.shape == (3, 6)


def test_cross_steps_need_the_stores_scores(tmp_path, G, analyzer, data) -> None:
    with pytest.raises(ValueError, match="cross-every 0"):
        train_mapping(replace(data, scores=None), tmp_path, regress(), config=config(G),
                      generator=G, analyzer=analyzer)


def test_the_mapper_is_an_inversion_encoder(tmp_path, G, analyzer, data) -> None:
    train_mapping(data, tmp_path, regress(steps=2), config=config(G), generator=G,
                  analyzer=analyzer)
    mapper = Mapper.from_checkpoint(tmp_path / "checkpoint.npz", analyzer=analyzer)
    faces = G.synthesis(G.mapping(torch.randn(2, G.z_dim))).detach().clamp(-1, 1)
    inv = Inverter("w", 1, init="encoder", encoder=mapper.encode).fit(G, faces, analyzer)
    assert inv.latents_.shape == (2, G.w_dim)


def test_bad_settings_name_the_argument() -> None:
    with pytest.raises(ValueError, match="stage"):
        TrainSettings(stage="fast")
    with pytest.raises(ValueError, match="lr"):
        TrainSettings(lr=float("nan"))
    with pytest.raises(ValueError, match="batch must be at least 2"):
        TrainSettings(stage="e2e", batch=1)
    with pytest.raises(ValueError, match="attr_init"):
        MapperConfig(attr_init="imagenet")


def test_cli_train_refuses_a_store_without_renders(tmp_path, capsys, G, analyzer) -> None:
    settings = SampleSettings(TINY, identity=("sface",), batch=8)
    sample_to_store(tmp_path / "s", 16, settings, models=Models(G, analyzer))
    code = main(["mapping", "train", "--store", str(tmp_path / "s"), "--out",
                 str(tmp_path / "run"), "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--images 256" in err and err.count("\n") == 1


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_uninterrupted_state(tmp_path, store) -> None:
    """`facelatent mapping train` killed with SIGKILL after a checkpoint, then run again, ends
    with the same weights and optimiser state as a run that was never killed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    def command(out: Path) -> list[str]:
        return [sys.executable, "-c", "import sys; from facelatent.cli import main; "
                "sys.exit(main(sys.argv[1:]))", "mapping", "train", "--store", str(store),
                "--out", str(out), "--steps", "12", "--batch", "4", "--holdout", "8",
                "--checkpoint-every", "3", "--attr-init", "random", "--device", "cpu"]

    def step_of(out: Path) -> int:
        try:
            return load_checkpoint(out / "checkpoint.npz").step
        except (FileNotFoundError, FileFormatError):
            return 0

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cut = tmp_path / "cut"
    proc = subprocess.Popen(command(cut), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while step_of(cut) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= step_of(cut) < 12
    done = subprocess.run(command(cut), check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resumed" in done.stdout
    whole = subprocess.run(command(tmp_path / "whole"), check=False, env=env, capture_output=True, text=True,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr
    a, b = params(tmp_path / "whole" / "checkpoint.npz"), params(cut / "checkpoint.npz")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    opt_a = load_checkpoint(tmp_path / "whole" / "checkpoint.npz").optimizers["model"]["state"]
    opt_b = load_checkpoint(cut / "checkpoint.npz").optimizers["model"]["state"]
    for i in opt_a:
        for key in opt_a[i]:
            assert torch.equal(opt_a[i][key], opt_b[i][key]), (i, key)
    steps = [line["step"] for line in read_log(cut / "log.jsonl") if "loss" in line]
    assert steps == list(range(1, 13))
