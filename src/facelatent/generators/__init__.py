"""Pretrained generators behind one contract (`Generator`), built by name with `get_generator`.

    G = get_generator("mobilestylegan-ffhq", device="auto")          # native PyTorch
    G = get_generator("mobilestylegan-ffhq", backend="openvino")     # fast CPU inference
    G = get_generator("stylegan2:/models/ffhq.pkl")                  # NVIDIA's StyleGAN2(-ADA)
    G = get_generator("stylegan3:/models/stylegan3-t-ffhq.pkl")      # NVIDIA's StyleGAN3 (T, R)
    G = get_generator("rosinality:/models/550000.pt")                # rosinality's StyleGAN2
    G = get_generator("converted:/models/ffhq-converted")            # `facelatent convert`'s output
    G = get_generator("pggan:/models/pggan_celebahq.pth")            # InterFaceGAN's PGGAN
    G = get_generator("stylegan1:/models/stylegan_ffhq.pth")         # InterFaceGAN's StyleGAN
    G = get_generator("stylegan1:/models/stylegan_ffhq.pth?truncation=off")  # its truncation off
    w = G.mapping(z_from_seeds([0, 1], G.z_dim), truncation_psi=0.7)
    images = G.synthesis(w)                                          # [2, 3, 1024, 1024]
"""

from __future__ import annotations

import torch

from facelatent import weights
from facelatent.generators.base import (
    Generator,
    StaleCacheWarning,
    available_generators,
    cached_w_avg,
    estimate_w_avg,
    get_generator,
    register_generator,
    register_generator_prefix,
    resolve_device,
    truncate,
    z_from_seeds,
)
from facelatent.generators.converted import load_converted
from facelatent.generators.mobilestylegan import (
    FFHQ_1024,
    TINY,
    MobileStyleGAN,
    load_ir,
)
from facelatent.generators.openvino import OpenVINOGenerator
from facelatent.generators.pggan import PGGAN, load_pggan
from facelatent.generators.rosinality import load_rosinality
from facelatent.generators.stylegan1 import StyleGAN1, load_stylegan1
from facelatent.generators.stylegan1 import parse_spec as parse_stylegan1_spec
from facelatent.generators.stylegan2 import StyleGAN2, load_stylegan2_pickle
from facelatent.generators.stylegan3 import StyleGAN3, load_stylegan3_pickle
from facelatent.runtime import keep_freed_memory

__all__ = [
    "Generator", "MobileStyleGAN", "OpenVINOGenerator", "StaleCacheWarning", "StyleGAN2",
    "StyleGAN3", "available_generators", "cached_w_avg", "estimate_w_avg", "get_generator",
    "register_generator", "register_generator_prefix", "resolve_device", "truncate",
    "z_from_seeds",
]

_MSG_ASSET = "mobilestylegan-ffhq"


def _mobilestylegan_files() -> dict[str, object]:
    names = ("mapping.xml", "mapping.bin", "synthesis.xml", "synthesis.bin")
    return {name: weights.file_path(_MSG_ASSET, name) for name in names}


@register_generator("mobilestylegan-ffhq", "torch")
def _mobilestylegan_torch(device: torch.device, **_: object) -> MobileStyleGAN:
    files = _mobilestylegan_files()
    model = MobileStyleGAN(FFHQ_1024, name="mobilestylegan-ffhq")
    load_ir(model, (files["mapping.xml"], files["mapping.bin"]),  # type: ignore[arg-type]
            (files["synthesis.xml"], files["synthesis.bin"]))
    w_avg = cached_w_avg(_MSG_ASSET, lambda n, seed: model.estimate_w_avg(n, seed),
                         FFHQ_1024.w_dim)
    model._w_avg.copy_(w_avg)
    if device.type == "cpu":
        keep_freed_memory()
    return model.eval().requires_grad_(False).to(device)


@register_generator("mobilestylegan-ffhq", "openvino")
def _mobilestylegan_openvino(device: torch.device, threads: int | None = None, **_: object) -> Generator:
    if device.type != "cpu":
        raise ValueError(f"the openvino backend runs on the CPU; got device={device}. "
                         "Use backend='torch' for a GPU")
    files = _mobilestylegan_files()
    gen = OpenVINOGenerator(files["mapping.xml"], files["synthesis.xml"],  # type: ignore[arg-type]
                            name="mobilestylegan-ffhq", num_ws=FFHQ_1024.num_ws,
                            w_avg=torch.zeros(FFHQ_1024.w_dim).numpy(), threads=threads)
    w_avg = cached_w_avg(_MSG_ASSET, lambda n, seed: estimate_w_avg(gen.mapping_raw, gen.z_dim,
                                                                     n, seed), gen.w_dim)
    gen._w_avg = w_avg
    return gen


@register_generator("mobilestylegan-tiny", "torch")
def _mobilestylegan_tiny(device: torch.device, seed: int = 0, **_: object) -> MobileStyleGAN:
    """Random weights, MobileStyleGAN architecture at 64x64: for tests and demos without files."""
    return MobileStyleGAN.random(TINY, seed=int(seed)).eval().requires_grad_(False).to(device)


@register_generator_prefix("stylegan2")
def _stylegan2_file(path: str, device: torch.device, **_: object) -> StyleGAN2:
    """NVIDIA's StyleGAN2 / StyleGAN2-ADA pickle (its G_ema), read without running its code."""
    return load_stylegan2_pickle(path).to(device)


@register_generator_prefix("stylegan3")
def _stylegan3_file(path: str, device: torch.device, **_: object) -> StyleGAN3:
    """NVIDIA's StyleGAN3 pickle, T or R config (its G_ema), read without running its code."""
    return load_stylegan3_pickle(path).to(device)


@register_generator_prefix("rosinality")
def _rosinality_file(path: str, device: torch.device, **_: object) -> StyleGAN2:
    """rosinality's StyleGAN2 `.pt` (its g_ema), read with torch.load(weights_only=True)."""
    return load_rosinality(path).to(device)


@register_generator_prefix("converted")
def _converted_folder(path: str, device: torch.device, **_: object) -> StyleGAN2:
    """A folder written by `facelatent convert` (model.safetensors + config.json)."""
    return load_converted(path).to(device)


@register_generator_prefix("pggan")
def _pggan_file(path: str, device: torch.device, **_: object) -> PGGAN:
    """InterFaceGAN's PGGAN `.pth` (a state dict), read with torch.load(weights_only=True)."""
    return load_pggan(path).to(device)


@register_generator_prefix("stylegan1")
def _stylegan1_file(path: str, device: torch.device, **_: object) -> StyleGAN1:
    """InterFaceGAN's StyleGAN v1 `.pth` (a state dict), read with torch.load(weights_only=True);
    ``PATH?truncation=PSI,LAYERS`` (or ``=off``) sets the truncation synthesis applies."""
    file, psi, layers = parse_stylegan1_spec(path)
    return load_stylegan1(file, truncation_psi=psi, truncation_layers=layers).to(device)
