"""Reading image files (facelatent.images.load_rgb) and the one check of the float convention
(check_images): every PIL mode as the right RGB, large images downscaled with little memory,
decompression bombs refused, and one-line errors naming the argument or the file."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_file
from facelatent.errors import FileFormatError
from facelatent.images import (
    MAX_PIXELS, check_image_list, check_images, from_uint8, load_rgb, to_uint8,
)

FACE = "fixtures/glasses_photos/without_glasses/0.jpg"     # in ../shared


def write_png(path: Path, width: int, height: int, row: Callable[[int], bytes], depth: int = 8,
              colour: int = 2) -> None:
    """A PNG streamed row by row (``row(y)`` gives the raw bytes of row y), so a huge image costs
    the test no memory. ``colour``: 0 grey, 2 RGB; ``depth``: 8 or 16 (big-endian samples)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    pack = zlib.compressobj(9)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)))
        data = b"".join(pack.compress(b"\x00" + row(y)) for y in range(height)) + pack.flush()
        f.write(chunk(b"IDAT", data))
        f.write(chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A real face photo, [H, W, 3] uint8."""
    return np.asarray(Image.open(shared_file(FACE)).convert("RGB"))


def grey_of(face: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(face).convert("L"))


def as_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


# -- modes ---------------------------------------------------------------------------------------

def test_16_bit_grey_png_reads_like_the_8_bit_one(tmp_path: Path, face: np.ndarray) -> None:
    """Defect 8: a 16-bit PNG read as white (values clipped at 255)."""
    grey = grey_of(face)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "face16.png")
    assert Image.open(tmp_path / "face16.png").mode == "I;16"
    np.testing.assert_array_equal(load_rgb(tmp_path / "face16.png"), as_rgb(grey))


def test_48_bit_rgb_png_reads_like_the_8_bit_one(tmp_path: Path, face: np.ndarray) -> None:
    h, w, _ = face.shape
    wide = face.astype(">u2") * 257
    write_png(tmp_path / "face48.png", w, h, lambda y: wide[y].tobytes(), depth=16)
    np.testing.assert_array_equal(load_rgb(tmp_path / "face48.png"), face)


def _modes(face: np.ndarray) -> dict[str, tuple[Image.Image, str, np.ndarray]]:
    """mode -> (image, file suffix, the RGB it must load as)."""
    grey = grey_of(face)
    rgb = Image.fromarray(face)
    h, w = grey.shape
    big_endian = Image.frombytes("I;16B", (w, h), (grey.astype(">u2") * 257).tobytes())
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:, : w // 2] = 0                                  # left half fully transparent
    rgba = np.dstack([face, alpha])
    white_left = face.copy()
    white_left[:, : w // 2] = 255
    palette = rgb.quantize(16)
    indices = np.asarray(palette)
    table = np.array(palette.getpalette()[:48], np.uint8).reshape(16, 3)
    palette.info["transparency"] = int(indices[0, 0])
    paletted = table[indices]
    paletted[indices == indices[0, 0]] = 255
    bits = (grey > 127).astype(np.uint8) * 255
    return {
        "I;16B": (big_endian, ".tif", as_rgb(grey)),
        "I 16-bit range": (Image.fromarray(grey.astype(np.int32) * 257, "I"), ".tif",
                           as_rgb(grey)),
        "I 8-bit range": (Image.fromarray(grey.astype(np.int32), "I"), ".tif", as_rgb(grey)),
        "F in [0, 1]": (Image.fromarray(grey.astype(np.float32) / 255, "F"), ".tif",
                        as_rgb(grey)),
        "L": (Image.fromarray(grey), ".png", as_rgb(grey)),
        "LA": (Image.fromarray(np.dstack([grey, alpha]), "LA"), ".png",
               as_rgb(np.where(alpha == 0, 255, grey).astype(np.uint8))),
        "RGBA": (Image.fromarray(rgba, "RGBA"), ".png", white_left),
        "P with transparency": (palette, ".png", paletted),
        "CMYK": (rgb.convert("CMYK"), ".tif", np.asarray(rgb.convert("CMYK").convert("RGB"))),
        "1": (Image.fromarray(grey > 127).convert("1"), ".png", as_rgb(bits)),
    }


@pytest.mark.parametrize("mode", ["I;16B", "I 16-bit range", "I 8-bit range", "F in [0, 1]",
                                  "L", "LA", "RGBA", "P with transparency", "CMYK", "1"])
def test_every_mode_loads_as_the_rgb_it_shows(tmp_path: Path, face: np.ndarray,
                                              mode: str) -> None:
    image, suffix, expected = _modes(face)[mode]
    path = tmp_path / f"face{suffix}"
    image.save(path)
    got = load_rgb(path)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    assert np.abs(got.astype(int) - expected).max() <= 1, mode


# -- size --------------------------------------------------------------------------------------

def test_large_png_is_averaged_down_by_an_integer_factor(tmp_path: Path, face: np.ndarray) -> None:
    Image.fromarray(face).save(tmp_path / "face.png")
    w = face.shape[1]
    got = load_rgb(tmp_path / "face.png", max_side=w // 3)
    expected = np.asarray(Image.fromarray(face).reduce(3))
    np.testing.assert_array_equal(got, expected)
    assert max(got.shape[:2]) <= w // 3


def test_large_jpeg_is_decoded_at_a_reduced_scale(tmp_path: Path, face: np.ndarray) -> None:
    Image.fromarray(face).save(tmp_path / "face.jpg", quality=95)
    full = load_rgb(tmp_path / "face.jpg")
    got = load_rgb(tmp_path / "face.jpg", max_side=100)       # 552 px: 1/8 scale, 69 px
    assert max(got.shape[:2]) <= 100
    small = np.asarray(Image.fromarray(full).resize(got.shape[1::-1], Image.Resampling.BOX))
    assert np.abs(got.astype(int) - small).mean() < 4


def test_exif_orientation_is_applied_after_downscaling(tmp_path: Path) -> None:
    image = Image.new("RGB", (400, 200), (200, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6                                     # rotate 90 degrees clockwise to view
    image.save(tmp_path / "turned.jpg", exif=exif)
    assert load_rgb(tmp_path / "turned.jpg").shape == (400, 200, 3)
    assert load_rgb(tmp_path / "turned.jpg", max_side=100).shape == (100, 50, 3)


def test_a_header_over_the_pixel_cap_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    side = int(MAX_PIXELS**0.5) + 10
    rows = iter([bytes(side * 3)])                     # one row of data: the rest is missing
    write_png(path, side, 1, lambda y: next(rows))
    blob = bytearray(path.read_bytes())
    blob[16:24] = struct.pack(">II", side, side)       # the header now claims side x side
    blob[29:33] = struct.pack(">I", zlib.crc32(bytes(blob[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(blob))
    with pytest.raises(FileFormatError, match=f"bomb.png is {side}x{side}.*shrink it first"):
        load_rgb(path)


# Linux's VmHWM: the peak resident size of this process image. (getrusage's ru_maxrss would
# carry the parent's peak across exec, and inside a large pytest process hide any growth.)
_CHILD = """
import json, sys
def peak_kb():
    return int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))
{imports}
before = peak_kb()
{work}
after = peak_kb()
print(json.dumps({{"grew_mb": (after - before) / 1024, "result": result}}))
"""


def _peak_growth(imports: str, work: str) -> dict[str, object]:
    """Run ``work`` in a fresh Python after ``imports``; how far its peak RSS rose, in MB."""
    if not Path("/proc/self/status").exists():
        pytest.skip("reads Linux's VmHWM")
    code = _CHILD.format(imports=imports, work=work)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_score_of_a_small_png_claiming_12000x12000_costs_no_memory(tmp_path: Path) -> None:
    """Defect 7: a 420 KB PNG of 12000 x 12000 cost 4 GB in `facelatent score` (a full decode
    alone is 432 MB of RGB, 1.7 GB as float)."""
    path = tmp_path / "huge.png"
    black = bytes(12000 * 3)
    write_png(path, 12000, 12000, lambda y: black)
    assert path.stat().st_size < 1_000_000
    small = tmp_path / "small.png"
    write_png(small, 64, 64, lambda y: bytes(64 * 3))
    # A small image first, so that what the command loads once (modules, networks) is in
    # memory before the measurement starts: what is left is the huge image's cost.
    warm = ("from facelatent.cli import main\nfrom contextlib import redirect_stdout\nimport io\n"
            f"with redirect_stdout(io.StringIO()):\n    main(['score', {str(small)!r}, '--json'])")
    out = _peak_growth(warm, "buf = io.StringIO()\nwith redirect_stdout(buf):\n"
                             f"    code = main(['score', {str(path)!r}, '--json'])\n"
                             "result = [code, json.loads(buf.getvalue())]")
    code, rows = out["result"]                                       # type: ignore[misc]
    assert code == 1 and "over the 134 MP" in rows[0]["error"] and "\n" not in rows[0]["error"]
    assert out["grew_mb"] < 40, out


def test_a_large_jpeg_decodes_in_a_fraction_of_its_full_size(tmp_path: Path) -> None:
    """9000 x 9000 (81 MP, 243 MB as RGB): decoded at half scale, then averaged to <= 4096."""
    path = tmp_path / "large.jpg"
    subprocess.run([sys.executable, "-c",
                    "from PIL import Image\n"
                    "Image.linear_gradient('L').resize((9000, 9000)).save("
                    f"{str(path)!r}, quality=80)"], check=True, timeout=300)
    out = _peak_growth("from facelatent.images import load_rgb",
                       f"result = list(load_rgb({str(path)!r}).shape)")
    assert out["result"] == [2250, 2250, 3]
    assert out["grew_mb"] < 100, out


# -- errors ----------------------------------------------------------------------------------

def test_unreadable_files_give_one_line_naming_the_file(tmp_path: Path, face: np.ndarray) -> None:
    Image.fromarray(face).save(tmp_path / "whole.png")
    blob = (tmp_path / "whole.png").read_bytes()
    cases = {"empty.png": b"", "notes.png": b"not an image", "cut.png": blob[: len(blob) // 2]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "folder.png").mkdir()
    for name in [*cases, "folder.png"]:
        with pytest.raises(FileFormatError) as caught:
            load_rgb(tmp_path / name)
        message = str(caught.value)
        assert name in message and "\n" not in message, message
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_rgb(tmp_path / "missing.png")


def test_a_file_without_read_permission_gives_one_line(tmp_path: Path, face: np.ndarray,
                                                       monkeypatch) -> None:
    path = tmp_path / "locked.png"
    Image.fromarray(face).save(path)
    path.chmod(0)
    if os.geteuid() == 0:              # root reads it anyway: refuse the open as the OS would
        import facelatent.io

        def refuse(file: object, *args: object, **kwargs: object) -> object:
            raise PermissionError(13, "Permission denied", str(file))
        monkeypatch.setattr(facelatent.io, "open", refuse, raising=False)
    with pytest.raises(FileFormatError, match="locked.png: Permission denied"):
        load_rgb(path)


# -- check_images ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, match", [
    (np.zeros((1, 3, 8, 8), np.float32), r"x must be a torch.Tensor \[N, 3, H, W\].*ndarray"),
    (torch.zeros(3, 8, 8), r"x must have shape \[N, 3, H, W\].*x\[None\]"),
    (torch.zeros(1, 8, 8, 3), r"got \[1, 8, 8, 3\].*x.permute\(0, 3, 1, 2\)"),
    (torch.zeros(0, 3, 8, 8), r"x is an empty batch"),
    (torch.zeros(1, 3, 0, 0), r"x is 0x0 pixels.*at least 1x1"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), r"x must be a float tensor.*from_uint8"),
    (torch.full((1, 3, 8, 8), float("nan")), r"x holds NaN"),
    (torch.full((1, 3, 8, 8), 255.0), r"x must be float RGB in \[-1, 1\].*x / 127.5 - 1"),
])
def test_check_images_names_the_argument_and_the_fix(bad: object, match: str) -> None:
    with pytest.raises(ValueError, match=match) as caught:
        check_images(bad, "x")
    assert "\n" not in str(caught.value)


def test_check_images_accepts_the_convention_and_generator_overshoot() -> None:
    x = torch.rand(2, 3, 8, 8) * 6 - 3                    # psi 1 overshoot of about 3
    assert check_images(x, "x") is x
    assert check_images(x, "x", size=8) is x
    with pytest.raises(ValueError, match=r"x must have shape \[N, 3, 16, 16\].*cut them"):
        check_images(x, "x", size=16, fix="cut them with face_crop")
    with pytest.raises(ValueError, match="x is 8x8 pixels.*16x16"):
        check_images(x, "x", min_side=16)


def test_check_image_list_names_the_bad_element() -> None:
    good = torch.zeros(3, 8, 8)
    assert len(check_image_list([good, torch.zeros(3, 4, 6)])) == 2
    with pytest.raises(ValueError, match=r"images\[1\] must be a tensor \[3, H, W\].*permute"):
        check_image_list([good, torch.zeros(8, 8, 3)])
    with pytest.raises(ValueError, match=r"images\[1\] is 0x0 pixels"):
        check_image_list([good, torch.zeros(3, 0, 0)])
    with pytest.raises(ValueError, match="list of"):
        check_image_list("face.png")


def test_uint8_round_trip_and_zero_size_arrays() -> None:
    arr = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    np.testing.assert_array_equal(to_uint8(from_uint8(arr)), arr)
    with pytest.raises(ValueError, match=r"\[1, 0, 0, 3\]"):
        from_uint8(np.zeros((1, 0, 0, 3), np.uint8))


@pytest.mark.slow
def test_real_models_score_a_16_bit_png_like_the_8_bit_one(tmp_path: Path, face: np.ndarray,
                                                           ) -> None:
    """Defect 8 end to end: the 16-bit PNG of a face used to get "no face found"."""
    from facelatent.faces.files import score_files

    grey = grey_of(face)
    Image.fromarray(grey).save(tmp_path / "face8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "face16.png")
    eight, sixteen = score_files([tmp_path / "face8.png", tmp_path / "face16.png"],
                                 "age,gender,yaw")
    assert eight["face"] is True and sixteen["face"] is True, (eight, sixteen)
    for name in ("age", "gender", "yaw", "detection_score"):
        assert sixteen[name] == pytest.approx(eight[name], abs=1e-4), name
