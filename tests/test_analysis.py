"""Tests of facelatent.faces.analysis (registry, FaceAnalyzer, score_files) and `facelatent score`.

Fast tests run the real pipeline code on random-weight networks and a stand-in detector, so
they need no model files. Tests marked slow use the real models (`facelatent weights fetch`) and
check the numbers the face-analysis issue asks for on real photos and generated faces.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facelatent.cli import main
from facelatent.faces import align, analysis
from facelatent.faces.detect import Detections
from facelatent.faces.faceapi import Landmark68Net
from facelatent.faces.files import score_files
from facelatent.images import from_uint8, load_rgb, save_png


class BrightFaceDetector(nn.Module):
    """Stand-in for YuNet: a face in every image whose mean is above -0.5, none elsewhere. The
    face's five points are the average FFHQ face's, placed on the image."""

    def detect(self, images: list[torch.Tensor]) -> list[Detections]:
        out = []
        for im in images:
            if float(im.mean()) > -0.5:
                pts = align.arcface5_from_landmarks68(align.generated_landmarks68(im[None]))
                h, w = im.shape[-2:]
                box = torch.tensor([[0.2 * w, 0.25 * h, 0.8 * w, 0.95 * h]])
                out.append(Detections(box, torch.tensor([0.9]), pts))
            else:
                out.append(Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)))
        return out


@pytest.fixture(scope="module")
def random_analyzer() -> analysis.FaceAnalyzer:
    loaders = {**analysis.random_face_loaders(), "yunet": BrightFaceDetector}
    return analysis.FaceAnalyzer(batch_size=3, loaders=loaders)


def faces(n: int, size: int = 128, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g) * 1.6 - 0.8
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear")


def test_resolve_attributes_expands_groups_and_rejects_unknown_names() -> None:
    assert analysis.resolve_attributes("pose,age") == ("yaw", "pitch", "roll", "age")
    assert len(analysis.resolve_attributes(["expression"])) == 7
    assert analysis.resolve_attributes(None) == analysis.DEFAULT_ATTRIBUTES
    with pytest.raises(ValueError, match="unknown attribute 'smiel'.*smile"):
        analysis.resolve_attributes("smiel")
    with pytest.raises(ValueError, match="no attribute"):
        analysis.resolve_attributes(" , ")


def test_generated_scores_have_one_finite_value_per_face(random_analyzer) -> None:
    images = faces(5)
    names = analysis.resolve_attributes("age,gender,gender_logit,smile,smile_logit,pose,"
                                        "mouth_open,eyes_open,eyeglasses,expression")
    out = random_analyzer.score(images, names, generated=True)
    assert list(out) == list(names)
    for name, value in out.items():
        assert value.shape == (5,), name
        assert torch.isfinite(value).all(), name
    assert ((out["gender"] >= 0) & (out["gender"] <= 1)).all()
    probs = torch.stack([out[f"expression_{e}"] for e in analysis.EXPRESSIONS], dim=1)
    assert torch.allclose(probs.sum(1), torch.ones(5), atol=1e-5)
    assert torch.allclose(torch.sigmoid(out["smile_logit"]), out["smile"], atol=1e-5)


def test_batch_size_does_not_change_scores(random_analyzer) -> None:
    images = faces(7, seed=1)
    small = random_analyzer.score(images, None, generated=True)        # batches of 3
    big = analysis.FaceAnalyzer(batch_size=16)
    big._models = random_analyzer._models                              # the same networks
    large = big.score(images, None, generated=True)
    for name in small:
        assert torch.allclose(small[name], large[name], atol=1e-4, rtol=1e-4), name


def test_generated_scores_and_embeddings_are_differentiable(random_analyzer) -> None:
    images = faces(2, seed=2).requires_grad_(True)
    out = random_analyzer.score(images, "age,smile,yaw,eyeglasses", generated=True)
    emb = random_analyzer.embed(images, "sface", generated=True)
    (sum(v.sum() for v in out.values()) + emb.sum()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_embeddings_are_unit_vectors(random_analyzer) -> None:
    for model in ("sface", "dlib"):
        emb = random_analyzer.embed(faces(3, seed=3), model, generated=True)
        assert emb.shape == (3, 128)
        assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="'sface' or 'dlib'"):
        random_analyzer.embed(faces(1), "arcface", generated=True)


def test_photos_without_a_face_get_nan_rows(random_analyzer) -> None:
    photos = [faces(1, 96, seed=4)[0], torch.full((3, 80, 120), -0.9), faces(1, 160, seed=5)[0]]
    geom = random_analyzer.locate(photos)
    assert geom.found.tolist() == [True, False, True]
    out = random_analyzer.score(photos, "age,yaw,eyeglasses", geometry=geom)
    for value in out.values():
        assert torch.isfinite(value[[0, 2]]).all() and torch.isnan(value[1])
    emb = random_analyzer.embed(photos, "dlib", geometry=geom)
    assert torch.isnan(emb[1]).all() and torch.isfinite(emb[[0, 2]]).all()


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 3, 64), r"\[N, 3, H, W\]"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "from_uint8"),
    (torch.full((1, 3, 64, 64), float("nan")), "NaN"),
    (torch.zeros(1, 3, 8, 8), "at least 16x16"),
    ([torch.zeros(64, 64)], r"images\[0\]"),
    ("face.png", "list of"),
])
def test_bad_images_raise_clear_errors(random_analyzer, bad: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        random_analyzer.score(bad, "age")  # type: ignore[arg-type]


def test_geometry_of_other_images_is_refused(random_analyzer) -> None:
    geom = random_analyzer.locate(faces(3), generated=True)
    for call in (lambda: random_analyzer.score(faces(2), "age", geometry=geom),
                 lambda: random_analyzer.embed(faces(2), "sface", geometry=geom),
                 lambda: random_analyzer.ffhq_align(faces(2), geometry=geom)):
        with pytest.raises(ValueError, match="geometry has 3 rows but images has 2"):
            call()


def test_generated_needs_one_batch_tensor(random_analyzer) -> None:
    with pytest.raises(ValueError, match="generated=True"):
        random_analyzer.score([faces(1)[0]], "age", generated=True)


def write_inputs(folder: Path) -> dict[str, Path]:
    """A face-like image, a dark image (no face), a tiny one, a corrupt file, a text file."""
    folder.mkdir(parents=True, exist_ok=True)
    arr = ((faces(1, 96, seed=6)[0].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
    paths = {"face": folder / "face.png", "dark": folder / "dark.png",
             "tiny": folder / "tiny.png", "corrupt": folder / "corrupt.jpg",
             "text": folder / "notes.png"}
    save_png(arr, paths["face"])
    save_png(np.full((64, 64, 3), 10, np.uint8), paths["dark"])
    save_png(np.full((6, 6, 3), 128, np.uint8), paths["tiny"])
    paths["corrupt"].write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    paths["text"].write_text("not an image")
    return paths


def test_score_files_reports_every_bad_input_and_keeps_going(tmp_path, random_analyzer) -> None:
    paths = write_inputs(tmp_path)
    missing = tmp_path / "missing.png"
    rows = score_files([*paths.values(), missing], "age,smile",
                                analyzer=random_analyzer)
    by_name = {Path(str(r["path"])).name: r for r in rows}
    assert [Path(str(r["path"])).name for r in rows] == [p.name for p in
                                                          [*paths.values(), missing]]
    assert "error" not in by_name["face.png"] and by_name["face.png"]["face"] is True
    assert math.isfinite(by_name["face.png"]["age"])  # type: ignore[arg-type]
    assert by_name["dark.png"]["error"] == "no face found"
    assert "6x6 pixels" in str(by_name["tiny.png"]["error"])
    assert "cannot read image" in str(by_name["corrupt.jpg"]["error"])
    assert "cannot read image" in str(by_name["notes.png"]["error"])
    assert "missing.png" in str(by_name["missing.png"]["error"])


def test_score_files_generated_refuses_non_square_images(tmp_path, random_analyzer) -> None:
    save_png(np.full((64, 48, 3), 128, np.uint8), tmp_path / "wide.png")
    save_png(np.full((64, 64, 3), 128, np.uint8), tmp_path / "square.png")
    rows = score_files([tmp_path], "age", generated=True, analyzer=random_analyzer)
    assert [Path(str(r["path"])).name for r in rows] == ["square.png", "wide.png"]
    assert "error" not in rows[0] and "square FFHQ-aligned" in str(rows[1]["error"])


def test_score_files_with_no_image_files_raises(tmp_path) -> None:
    with pytest.raises(ValueError, match="no image files"):
        score_files([tmp_path])


def test_faces_list_names_every_model_and_attribute(capsys) -> None:
    assert main(["faces", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {m["name"] for m in listed["models"]} == set(analysis.MODELS)
    assert {a["name"] for a in listed["attributes"]} == set(analysis.ATTRIBUTES)
    assert main(["faces", "list"]) == 0
    assert "eyeglasses" in capsys.readouterr().out


def test_score_cli_rejects_an_unknown_attribute(tmp_path, capsys) -> None:
    assert main(["score", str(tmp_path), "--attributes", "beard"]) == 2
    assert "unknown attribute 'beard'" in capsys.readouterr().err


def write_unreadable(folder: Path) -> list[Path]:
    """Inputs that fail before any model runs: empty, truncated, not an image, a header that
    claims 50000 x 50000 pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    save_png(np.full((64, 64, 3), 99, np.uint8), folder / "whole.png")
    blob = (folder / "whole.png").read_bytes()
    (folder / "whole.png").unlink()
    bomb = bytearray(blob)
    bomb[16:24] = (50000).to_bytes(4, "big") * 2
    bomb[29:33] = zlib.crc32(bytes(bomb[12:29])).to_bytes(4, "big")
    files = {"empty.png": b"", "cut.png": blob[:40], "notes.jpg": b"hello", "bomb.png": bomb}
    for name, data in files.items():
        (folder / name).write_bytes(bytes(data))
    return [folder / name for name in sorted(files)]


def test_score_files_turns_every_unreadable_input_into_one_line(tmp_path, random_analyzer,
                                                                 ) -> None:
    paths = write_unreadable(tmp_path / "in")
    (tmp_path / "in" / "sub.png").mkdir()              # a folder named like an image: skipped
    rows = score_files([tmp_path / "in", tmp_path / "missing.png"], "age",
                       analyzer=random_analyzer)
    assert [r["path"] for r in rows] == [str(p) for p in paths] + [str(tmp_path / "missing.png")]
    for row in rows:
        error = str(row["error"])
        assert row["face"] is False and Path(str(row["path"])).name in error, row
        assert "\n" not in error
    assert "2500 MP, over the 134 MP" in str(rows[0]["error"])


def test_score_files_reports_a_folder_it_cannot_list(tmp_path, random_analyzer,
                                                     monkeypatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    save_png(np.full((64, 64, 3), 99, np.uint8), locked / "a.png")
    locked.chmod(0)
    if os.geteuid() == 0:              # root lists it anyway: refuse as the OS would
        scandir = os.scandir

        def refuse(path: object = ".") -> object:
            if Path(str(path)) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return scandir(path)        # type: ignore[arg-type]
        monkeypatch.setattr(os, "scandir", refuse)
    try:
        rows = score_files([tmp_path], "age", analyzer=random_analyzer)
    finally:
        locked.chmod(0o755)
    assert rows == [{"path": str(locked), "face": False,
                     "error": f"cannot list folder {locked}: Permission denied"}]


def test_score_cli_prints_one_line_per_bad_input_and_no_traceback(tmp_path, capsys) -> None:
    write_unreadable(tmp_path)
    assert main(["score", str(tmp_path), str(tmp_path / "missing.png")]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [line for line in out.splitlines()[1:] if line.strip()]
    assert len(lines) == 5 and all("error:" in line for line in lines), out


# --------------------------------------------------------------------------- real models

PHOTOS = {  # name: (asset, is male, apparent age when photographed)
    "obama.jpg": ("test-photos", True, 50),
    "obama2.jpg": ("test-photos", True, 47),
    "obama3.jpg": ("test-photos", True, 48),
    "biden.jpg": ("test-photos", True, 66),
    "astronaut.png": ("skimage-photos", False, 42),
}


@pytest.fixture(scope="module")
def real_analyzer() -> analysis.FaceAnalyzer:
    return analysis.FaceAnalyzer()


@pytest.fixture(scope="module")
def photos() -> dict[str, torch.Tensor]:
    from facelatent.weights import file_path
    return {name: from_uint8(load_rgb(file_path(asset, name))[None])[0]
            for name, (asset, _, _) in PHOTOS.items()}


@pytest.mark.slow
def test_real_photos_gender_smile_age_and_flipped_yaw(real_analyzer, photos) -> None:
    names = list(photos)
    images = list(photos.values())
    out = real_analyzer.score(images, "age,gender,smile,yaw,roll")
    flipped = real_analyzer.score([im.flip(-1) for im in images], "yaw,roll")
    report = {n: {k: round(float(v[i]), 2) for k, v in out.items()} for i, n in enumerate(names)}
    for i, name in enumerate(names):
        _, male, age = PHOTOS[name]
        assert (out["gender"][i] > 0.5) == male, report
        assert abs(float(flipped["yaw"][i] + out["yaw"][i])) < 5, (name, report)
        assert abs(float(flipped["roll"][i] + out["roll"][i])) < 5, (name, report)
        if name != "obama.jpg":
            assert abs(float(out["age"][i]) - age) < 10, (name, report)
    # obama.jpg (his 2012 portrait, aged 51) reads as 38 years: the Cydral net does the same on
    # native dlib's own chips (33.6), so it is the model's error, kept visible here.
    assert 30 < float(out["age"][0]) < 45, report
    assert out["smile"][names.index("astronaut.png")] > 0.8, report   # she smiles
    assert out["smile"][names.index("obama.jpg")] > 0.8, report       # so does he
    assert out["smile"][names.index("biden.jpg")] < 0.2, report


@pytest.mark.slow
def test_real_photos_both_recognisers_separate_the_two_men(real_analyzer, photos) -> None:
    images = [photos[n] for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")]
    for model in ("sface", "dlib"):
        emb = real_analyzer.embed(images, model)
        cos = emb @ emb.T
        same = [float(cos[i, j]) for i in range(3) for j in range(i + 1, 3)]
        different = [float(cos[i, 3]) for i in range(3)]
        assert min(same) > max(different), (model, same, different)


@pytest.mark.slow
def test_real_models_score_no_face_in_grey_noise_or_a_cat(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    save_png(np.full((200, 200, 3), 128, np.uint8), tmp_path / "grey.png")
    save_png(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8), tmp_path / "noise.png")
    save_png(np.full((12, 12, 3), 128, np.uint8), tmp_path / "tiny.png")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)
    code = main(["score", str(tmp_path), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 1
    errors = {Path(r["path"]).name: r["error"] for r in rows}
    assert errors == {"corrupt.jpg": errors["corrupt.jpg"], "grey.png": "no face found",
                      "noise.png": "no face found", "tiny.png": errors["tiny.png"]}
    assert "cannot read image" in errors["corrupt.jpg"] and "12x12" in errors["tiny.png"]


@pytest.mark.slow
def test_real_score_cli_json_has_one_object_per_photo(capsys) -> None:
    from facelatent.weights import file_path
    paths = [str(file_path("test-photos", "biden.jpg")),
             str(file_path("skimage-photos", "astronaut.png"))]
    assert main(["score", *paths, "--json", "--identity", "sface"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in rows] == paths
    for r in rows:
        for key in analysis.DEFAULT_ATTRIBUTES:
            assert isinstance(r[key], float)
        assert len(r["identity"]) == 128 and "error" not in r
    assert main(["score", *paths, "--csv", "--attributes", "age,gender"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "path,face,age,gender,error" and len(lines) == 3


@pytest.mark.slow
def test_fixed_geometry_is_what_the_average_face_gives() -> None:
    from facelatent.faces.detect import YuNetDetector
    from facelatent.generators import get_generator

    points, box = align.derive_ffhq_geometry(get_generator("mobilestylegan-ffhq"),
                                             YuNetDetector.load(), Landmark68Net.load())
    stored = torch.tensor(align.FFHQ_LANDMARKS68)
    assert (points - stored).abs().max() < 2e-3          # 2 px at 1024
    assert (box - torch.tensor(align.FFHQ_FACE_BOX)).abs().max() < 2e-3


@pytest.mark.slow
def test_ffhq_aligned_photos_put_the_face_where_generated_faces_have_it(real_analyzer,
                                                                         photos) -> None:
    images = list(photos.values())
    geom = real_analyzer.locate(images)
    aligned, found = real_analyzer.ffhq_align(images, size=512, geometry=geom)
    assert found.all()
    again = real_analyzer.locate(list(aligned), landmarks=False)
    # YuNet's own eye points on the generator's average face, at the same size.
    from facelatent.generators import get_generator
    from facelatent.images import resize
    G = get_generator("mobilestylegan-ffhq")
    with torch.no_grad():
        average = resize(G.synthesis(G.w_avg[None]).clamp(-1, 1), 512)
    template = real_analyzer.locate(average, landmarks=False).points5[0]
    eyes = again.points5[:, :2]                                          # [N, 2, 2]
    eye_distance = (template[1] - template[0]).norm()
    # FFHQ's square is sized by the larger of two face measures and centred a little below
    # the eyes, so eye positions vary from face to face; their midpoint varies least.
    midpoint = (eyes.mean(dim=1) - template[:2].mean(dim=0)).norm(dim=-1) / eye_distance
    spacing = (eyes[:, 1] - eyes[:, 0]).norm(dim=-1) / eye_distance
    assert again.found.all(), again.found
    assert (midpoint < 0.15).all() and ((spacing - 1).abs() < 0.1).all(), (midpoint, spacing)
    # The fixed generated-face crop then reads the same face as the photo pipeline did.
    fixed = real_analyzer.score(aligned, "gender,yaw", generated=True)
    found = real_analyzer.score(images, "gender,yaw")
    assert ((fixed["gender"] > 0.5) == (found["gender"] > 0.5)).all()
    assert (fixed["yaw"] - found["yaw"]).abs().max() < 8, (fixed["yaw"], found["yaw"])


def test_generator_overshoot_is_clipped_but_0_255_images_are_refused(random_analyzer) -> None:
    images = faces(2, seed=8)
    over = images * 3.0                          # a generator at psi 1 overshoots like this
    a = random_analyzer.score(over, "age,eyeglasses", generated=True)
    b = random_analyzer.score(over.clamp(-1, 1), "age,eyeglasses", generated=True)
    for name in a:
        assert torch.equal(a[name], b[name])
    with pytest.raises(ValueError, match="0-255"):
        random_analyzer.score((images + 1) * 127.5, "age", generated=True)
    wild = images * 11.0                         # one MobileStyleGAN face in ~20,000 at psi 1
    assert float(wild.min()) < -6 and float(wild.max()) > 8
    c = random_analyzer.score(wild, "age", generated=True)
    assert torch.equal(c["age"], random_analyzer.score(wild.clamp(-1, 1), "age",
                                                       generated=True)["age"])
    with pytest.raises(ValueError, match="0-255"):
        random_analyzer.score(wild, "age")       # a photo: the plain bound
