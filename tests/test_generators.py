"""Tests of the generator contract on the tiny random MobileStyleGAN (64x64, no model files).

What is checked: the contract's attributes and shapes, that a sample's result does not depend
on its batch, seeded latents, truncation, that every W+ row drives the layer the module
docstring says it does, input validation, gradients through synthesis, the IR reader's error
paths, and the seeds -> images pipeline with its CLI. The w_avg cache is tested in
test_weights_derived.py, hostile `generate` options in test_generate_cli.py, seed lists in
test_ranges.py. Tests on the real weights are in test_mobilestylegan_real.py (marked slow).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facelatent.cli import main
from facelatent.errors import FacelatentError, WeightsError
from facelatent.generators import Generator, MobileStyleGAN, available_generators, get_generator
from facelatent.generators.base import z_from_seeds
from facelatent.formats.ir import IRGraph
from facelatent.images import to_uint8
from facelatent.latents.sampling import generate_to_dir, latents_for_seeds, load_latents


@pytest.fixture(scope="module")
def G() -> MobileStyleGAN:
    model = get_generator("mobilestylegan-tiny")
    assert isinstance(model, MobileStyleGAN)
    return model


def w_for(G: MobileStyleGAN, seeds: list[int], psi: float = 1.0) -> torch.Tensor:
    return G.mapping(z_from_seeds(seeds, G.z_dim), truncation_psi=psi)


def style_layers(G: MobileStyleGAN) -> list[torch.nn.Module]:
    """The module each W+ row feeds, in row order (see the mobilestylegan module docstring)."""
    net = G.synthesis_net
    layers: list[torch.nn.Module] = [net.conv1]
    for block in net.blocks:
        layers += [block.up, block.conv1, block.conv2]
    return layers + [net.to_img]


@contextmanager
def layer_outputs(G: MobileStyleGAN) -> Iterator[list[torch.Tensor]]:
    """Collect the output of every style layer, in row order, for each synthesis call."""
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach().clone()))
             for m in style_layers(G)]
    try:
        yield outputs
    finally:
        for hook in hooks:
            hook.remove()


# --------------------------------------------------------------------------------------------
# the contract


def test_registry_lists_the_generators() -> None:
    names = available_generators()
    assert names["mobilestylegan-ffhq"] == ["openvino", "torch"]
    assert names["mobilestylegan-tiny"] == ["torch"]


def test_contract_attributes(G: MobileStyleGAN) -> None:
    assert isinstance(G, Generator)
    assert (G.z_dim, G.w_dim, G.num_ws, G.resolution) == (32, 32, 11, 64)
    assert G.num_ws == len(style_layers(G))
    assert G.w_avg.shape == (32,) and G.w_avg.dtype == torch.float32
    assert torch.isfinite(G.w_avg).all() and G.w_avg.abs().sum() > 0
    assert G.device == torch.device("cpu")


def test_output_shapes_for_w_and_wplus(G: MobileStyleGAN) -> None:
    w = w_for(G, [0, 1, 2])
    assert w.shape == (3, 32) and w.dtype == torch.float32
    images = G.synthesis(w)
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.float32
    wplus = w[:, None, :].repeat(1, G.num_ws, 1)
    assert G.synthesis(wplus).shape == (3, 3, 64, 64)
    # W is shorthand for W+ with the same row for every layer
    assert (G.synthesis(wplus) - images).abs().max() <= 1e-6


def test_batched_equals_one_by_one(G: MobileStyleGAN) -> None:
    seeds = [3, 1, 4, 1, 5]
    z = z_from_seeds(seeds, G.z_dim)
    w = G.mapping(z)
    singles = torch.cat([G.mapping(z[i:i + 1]) for i in range(len(seeds))])
    assert (w - singles).abs().max() <= 1e-5

    # per style layer too: the random model's early layers barely move its image
    with layer_outputs(G) as batched:
        images = G.synthesis(w)
    one_by_one = []
    for i in range(len(seeds)):
        with layer_outputs(G) as outs:
            one_by_one.append(G.synthesis(w[i:i + 1]))
        for k, (out, ref) in enumerate(zip(outs, batched)):
            assert (out[0] - ref[i]).abs().max() <= 1e-5, f"layer {k}, sample {i}"
    assert (torch.cat(one_by_one) - images).abs().max() <= 1e-5
    assert (images[0] - images[2]).abs().max() > 0.1  # different seeds, different images


def test_z_from_seeds_is_per_seed() -> None:
    z = z_from_seeds([7, 0, 12345], 32)
    assert z.shape == (3, 32) and z.dtype == torch.float32
    for row, seed in zip(z, [7, 0, 12345]):
        expected = np.random.RandomState(seed).randn(32).astype(np.float32)
        assert np.array_equal(row.numpy(), expected)
    assert torch.equal(z_from_seeds([12345, 7], 32), z[[2, 0]])  # order and batch do not matter
    assert torch.equal(z_from_seeds([0], 32)[0], z[1])
    assert not torch.equal(z[0], z[1])


@pytest.mark.parametrize("seeds", [[-1], [2**32], []])
def test_z_from_seeds_rejects(seeds: list[int]) -> None:
    with pytest.raises(ValueError, match="seed"):
        z_from_seeds(seeds, 32)


def test_truncation(G: MobileStyleGAN) -> None:
    z = z_from_seeds([0, 1, 2], G.z_dim)
    w = G.mapping(z)
    assert torch.equal(G.mapping(z, truncation_psi=1.0), w)
    w0 = G.mapping(z, truncation_psi=0.0)
    assert (w0 - G.w_avg).abs().max() <= 1e-6
    half = G.mapping(z, truncation_psi=0.5)
    assert (half - (w + G.w_avg) / 2).abs().max() <= 1e-5
    assert (w - G.w_avg).abs().max() > 0.1  # so the checks above compare different things
    with pytest.raises(ValueError, match="truncation_psi"):
        G.mapping(z, truncation_psi=float("nan"))


def test_every_wplus_row_drives_its_own_layer(G: MobileStyleGAN) -> None:
    """Changing only row k leaves the layers before layer k alone, changes layer k and the image.

    Checked at each layer's output as well as the image: in the random model the effect of an
    early layer on the image is tiny (about 1e-7) though not zero.
    """
    w = w_for(G, [0, 1])
    base = w[:1, None, :].repeat(1, G.num_ws, 1)
    with layer_outputs(G) as ref_layers:
        ref = G.synthesis(base)
    for k in range(G.num_ws):
        ws = base.clone()
        ws[0, k] = w[1]
        with layer_outputs(G) as layers:
            image = G.synthesis(ws)
        for j in range(k):
            assert torch.equal(layers[j], ref_layers[j]), f"row {k} changed layer {j}"
        change = (layers[k] - ref_layers[k]).abs().max() / ref_layers[k].std()
        assert change > 0.01, f"row {k} barely changes its layer ({change:.2g})"
        assert not torch.equal(image, ref), f"row {k} does not reach the image"


def test_gradients_reach_every_row(G: MobileStyleGAN) -> None:
    ws = w_for(G, [0, 1])[:, None, :].repeat(1, G.num_ws, 1).requires_grad_()
    G.synthesis(ws).sum().backward()
    assert ws.grad is not None and ws.grad.shape == (2, G.num_ws, G.w_dim)
    assert torch.isfinite(ws.grad).all()
    assert (ws.grad.abs().amax(dim=(0, 2)) > 0).all()


def test_gradient_matches_finite_differences(G: MobileStyleGAN) -> None:
    G64 = copy.deepcopy(G).double()
    gen = torch.Generator().manual_seed(0)
    ws = w_for(G, [0, 1])[:, None, :].repeat(1, G.num_ws, 1).double().requires_grad_()
    target = torch.rand(2, 3, 64, 64, generator=gen, dtype=torch.float64)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return (G64.synthesis(x) * target).sum()

    loss(ws).backward()
    assert ws.grad is not None
    direction = torch.randn(ws.shape, generator=gen, dtype=torch.float64)
    eps = 1e-6
    with torch.no_grad():
        numeric = (loss(ws + eps * direction) - loss(ws - eps * direction)) / (2 * eps)
    analytic = (ws.grad * direction).sum()
    assert abs(numeric - analytic) <= 1e-6 * abs(analytic)


# --------------------------------------------------------------------------------------------
# input validation and names


@pytest.mark.parametrize("shape,message", [
    ((2, 33), r"z must have shape \[N, 32\], got \[2, 33\]"),
    ((32,), r"z must have shape \[N, 32\], got \[32\]; for one latent use z.reshape\(1, 32\)"),
    ((1, 2, 32), r"z must have shape \[N, 32\]"),
])
def test_bad_z_shape(G: MobileStyleGAN, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        G.mapping(torch.zeros(shape))


def test_bad_z_values_and_type(G: MobileStyleGAN) -> None:
    z = torch.zeros(2, 32)
    z[1, 3] = float("nan")
    with pytest.raises(ValueError, match="z contains NaN"):
        G.mapping(z)
    with pytest.raises(ValueError, match="z must be a torch.Tensor"):
        G.mapping(np.zeros((2, 32), dtype=np.float32))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("wplus", [False, True])
def test_non_finite_ws(G: MobileStyleGAN, bad: float, wplus: bool) -> None:
    ws = torch.zeros(2, G.num_ws, G.w_dim) if wplus else torch.zeros(2, G.w_dim)
    ws.view(-1)[5] = bad
    with pytest.raises(ValueError, match="ws contains NaN or infinite values"):
        G.synthesis(ws)


@pytest.mark.parametrize("shape", [(2, 10, 32), (2, 12, 32), (2, 11, 31), (2, 31), (32,)])
def test_bad_ws_shape(G: MobileStyleGAN, shape: tuple[int, ...]) -> None:
    expected = r"ws must have shape \[N, 32\] \(W\) or \[N, 11, 32\] \(W\+\), got "
    with pytest.raises(ValueError, match=expected + str(list(shape)).replace("[", r"\[")):
        G.synthesis(torch.zeros(shape))


def test_unknown_generator_suggests_the_closest() -> None:
    with pytest.raises(FacelatentError, match="unknown generator 'mobilestylegan-ffh'; "
                                              "did you mean 'mobilestylegan-ffhq'"):
        get_generator("mobilestylegan-ffh")
    with pytest.raises(FacelatentError, match="available: mobilestylegan-ffhq"):
        get_generator("stylegan9")


def test_unknown_backend() -> None:
    with pytest.raises(FacelatentError, match="'mobilestylegan-tiny' has no backend 'onnx' "
                                              r"\(available: torch\)"):
        get_generator("mobilestylegan-tiny", backend="onnx")


def test_openvino_backend_refuses_a_gpu_before_reading_files(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a machine with a GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="the openvino backend runs on the CPU; got device=cuda"):
        get_generator("mobilestylegan-ffhq", device="cuda", backend="openvino")


# --------------------------------------------------------------------------------------------
# the IR reader (the real files are exercised in test_mobilestylegan_real.py)


def write_ir(folder: Path, consts: dict[str, np.ndarray], bin_bytes: int | None = None
             ) -> tuple[Path, Path]:
    """A minimal IR v10 pair: a Parameter, the float constants, and one Add per constant.

    `bin_bytes` cuts the .bin file to that many bytes.
    """
    layers = ['<layer id="0" name="x" type="Parameter" version="opset1"/>']
    edges = []
    blob = b""
    for i, (name, value) in enumerate(consts.items()):
        data = value.astype(np.float32).tobytes()
        shape = ",".join(str(d) for d in value.shape)
        layers.append(f'<layer id="{2 * i + 1}" name="{name}" type="Const" version="opset1">'
                      f'<data element_type="f32" shape="{shape}" offset="{len(blob)}" '
                      f'size="{len(data)}"/></layer>')
        layers.append(f'<layer id="{2 * i + 2}" name="add{i}" type="Add" version="opset1"/>')
        edges.append(f'<edge from-layer="0" from-port="0" to-layer="{2 * i + 2}" to-port="0"/>')
        edges.append(f'<edge from-layer="{2 * i + 1}" from-port="0" to-layer="{2 * i + 2}" '
                     'to-port="1"/>')
        blob += data
    xml = folder / "net.xml"
    xml.write_text(f'<?xml version="1.0"?><net name="t" version="10"><layers>{"".join(layers)}'
                   f'</layers><edges>{"".join(edges)}</edges></net>')
    binary = folder / "net.bin"
    binary.write_bytes(blob if bin_bytes is None else blob[:bin_bytes])
    return xml, binary


CONSTS = {"a.weight": np.arange(6.0).reshape(2, 3), "a.bias": np.array([0.5, -1.5])}


def test_ir_reads_constants_and_edges(tmp_path: Path) -> None:
    g = IRGraph(*write_ir(tmp_path, CONSTS))
    weight = g.const_layer("a.weight")
    assert np.array_equal(g.take(weight), CONSTS["a.weight"].astype(np.float32))
    add = g.only_consumer(weight, "Add")
    assert g.const_input(add).name == "a.weight"
    assert g.other_input(add, weight).type == "Parameter"
    with pytest.raises(WeightsError, match="'a.weight' used twice"):
        g.take(weight)
    with pytest.raises(WeightsError,
                       match=r"1 tensors were not used by the loader \(first: \['a.bias'\]"):
        g.check_all_taken()
    np.testing.assert_array_equal(g.take_named("a.bias"), [0.5, -1.5])
    g.check_all_taken()


def test_ir_take_scalar_checks_the_value(tmp_path: Path) -> None:
    g = IRGraph(*write_ir(tmp_path, {"slope": np.array([0.2]), "gain": np.array([1.5])}))
    assert g.take_scalar(g.const_layer("slope"), 0.2, "slope") == pytest.approx(0.2)
    with pytest.raises(WeightsError, match=r"gain is \[1.5\], expected 2.0"):
        g.take_scalar(g.const_layer("gain"), 2.0, "gain")


def test_ir_unknown_tensor_name(tmp_path: Path) -> None:
    g = IRGraph(*write_ir(tmp_path, CONSTS))
    with pytest.raises(WeightsError,
                       match="tensor 'a.scale' not found; .*facelatent weights verify"):
        g.const_layer("a.scale")


def test_ir_truncated_bin(tmp_path: Path) -> None:
    with pytest.raises(WeightsError,
                       match="past the end of the .bin file .*facelatent weights fetch"):
        IRGraph(*write_ir(tmp_path, CONSTS, bin_bytes=30))


def test_ir_missing_or_garbage_files(tmp_path: Path) -> None:
    xml, binary = write_ir(tmp_path, CONSTS)
    with pytest.raises(WeightsError, match="cannot read IR"):
        IRGraph(tmp_path / "missing.xml", binary)
    with pytest.raises(WeightsError, match="cannot read IR"):
        IRGraph(xml, tmp_path / "missing.bin")
    xml.write_bytes(b"\x00\x01 not xml <<<")
    with pytest.raises(WeightsError, match="cannot read IR"):
        IRGraph(xml, binary)


# --------------------------------------------------------------------------------------------
# seeds -> images


def test_generate_to_dir(G: MobileStyleGAN, tmp_path: Path) -> None:
    seeds = [0, 1, 2, 5, 11]
    made: list[int] = []
    result = generate_to_dir(G, seeds, tmp_path, truncation_psi=0.7, batch=2, progress=made.append)
    assert made == [2, 2, 1]
    assert [p.name for p in result.images] == [f"seed{s:04d}.png" for s in seeds]
    z, w = latents_for_seeds(G, seeds, truncation_psi=0.7)
    saved = load_latents(result.latents)
    assert saved.seeds.tolist() == seeds
    assert saved.z is not None and np.array_equal(saved.z, z.numpy())
    assert np.array_equal(saved.w, w.numpy())
    assert saved.truncation_psi == pytest.approx(0.7) and saved.space == "w"
    assert saved.generator == "mobilestylegan-random"
    # the PNG is the generator's image, quantised
    expected = to_uint8(G.synthesis(w[3:4]))[0]
    png = np.asarray(Image.open(result.images[3]))
    assert png.shape == (64, 64, 3)
    assert np.abs(png.astype(int) - expected.astype(int)).max() <= 1
    with Image.open(result.grid) as grid:
        assert grid.size == (3 * 64 + 2 * 2, 2 * 64 + 2)  # 3 columns, 2 rows, 2-pixel gaps


def test_truncation_in_z_space(G: MobileStyleGAN) -> None:
    z, w = latents_for_seeds(G, [4, 2], truncation_psi=0.5, space="z")
    assert torch.equal(z, z_from_seeds([4, 2], G.z_dim) * 0.5)
    assert torch.equal(w, G.mapping(z))
    with pytest.raises(ValueError, match="space must be 'z' or 'w'"):
        latents_for_seeds(G, [0], space="x")


def test_cli_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["generate", "--model", "mobilestylegan-tiny", "--seeds", "0-3", "--out", str(out),
                 "--device", "cpu"])
    assert code == 0
    assert sorted(p.name for p in out.glob("seed*.png")) == [f"seed{s:04d}.png" for s in range(4)]
    assert (out / "grid.png").is_file() and (out / "latents.npz").is_file()
    assert "wrote 4 images" in capsys.readouterr().out


def test_cli_generate_bad_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "--model", "mobilestylegan-tiny", "--seeds", "3-1",
                 "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("facelatent: error: bad --seeds list range '3-1'")
    assert not (tmp_path / "out").exists()
