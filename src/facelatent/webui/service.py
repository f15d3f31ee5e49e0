"""The web editor's logic, UI-agnostic: faces in, edits, scores, files out.

One `EditorService` per process holds the generator, the face models and the sliders, loaded
once; each user's face is a `Face` value that the front end keeps per session. Every
computation takes the service's lock, so two users' requests run one after the other instead
of splitting two cores between them (the Gradio queue in front of it keeps them in order and
bounded, `facelatent.webui.app`).

An edit is `facelatent edit`'s: for each slider not at 0, `edit_latents` with the arguments the
command passes (relative mode, sigma units, the "keep fixed" sliders as conditions, the chosen
style inputs or a SeFa direction's own), and the image comes from `editing.synthesize`. So one
slider at s is ``facelatent edit --seeds N --boundary FILE --range s s --steps 1`` pixel for
pixel (tests/test_webui.py). Several sliders add their moves one after the other.

A render gives the full-size image and its preview (`preview_size`, the same downscale the
command line's ``--size`` applies); `analyse` then scores it: the attributes, and the identity
against the unedited face by both recognisers with the LFW-calibrated same-person verdict.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from facelatent.editing.apply import edit_latents, synthesize
from facelatent.errors import FacelatentError
from facelatent.faces.analysis import FaceAnalyzer
from facelatent.faces.calibration import SAME_PERSON_THRESHOLD
from facelatent.generators.base import Generator, as_wplus
from facelatent.images import resize, to_uint8
from facelatent.io import save_npz
from facelatent.ranges import SEED_LIMIT, parse_layers
from facelatent.webui.directions import Direction
from facelatent.webui.state import Aligned, Analysis, Edit, Face, Render  # re-exported
from facelatent.webui.uploads import (
    DEFAULT_LIMITS,
    UploadLimits,
    clean_name,
    read_latents_upload,
    read_photo_upload,
)

if TYPE_CHECKING:
    from facelatent.boundaries.identity import IdentityBoundaries
    from facelatent.mapping.mapper import Mapper

__all__ = ["MAX_STRENGTH", "PANEL_ATTRIBUTES", "Aligned", "Analysis", "Edit", "EditorService",
           "Face", "Render"]

KEEP_EXPORTS = 64      # newest download folders kept; the front end has served or copied older ones
MAX_STRENGTH = 10.0    # sigma; beyond a few sigma faces break up, beyond this nothing is a face
RAW_MAX_OFF = 2.0      # identity page, boundaries without a spread: raw units (~7-10 sigma in W)
# Scores in the live panel, with what they mean. Log-odds rather than probabilities: on
# generated faces the probabilities saturate, and log-odds move with the sliders.
PANEL_ATTRIBUTES = {"yaw": "pose: yaw (deg)", "pitch": "pose: pitch (deg)",
                    "smile_logit": "smile (log-odds)", "age": "age (years)",
                    "gender_logit": "gender (log-odds male)",
                    "eyeglasses": "eyeglasses (> 0: glasses)"}
RECOGNISERS = ("dlib", "sface")
Progress = Callable[[float, str], None]


class EditorService:
    """Faces, edits, scores and files for the web editor (module docstring).

    ``generator``, ``analyzer``: loaded once, shared by every user. ``directions``: the
    sliders, attribute boundaries first. ``truncation_psi`` / ``truncation_space``: how seeds
    become w (the boundaries' store's). ``mapper``: a `facelatent.mapping.Mapper` for swaps,
    or None. ``identities``: `IdentityBoundaries` for the synthetic-identity page, or None.
    """

    def __init__(self, generator: Generator, analyzer: FaceAnalyzer,
                 directions: Sequence[Direction], *,
                 truncation_psi: float = 1.0,     # how seeds become w: the boundaries' store's
                 truncation_space: str = "w",
                 preview_size: int = 256,         # px of the image shown while dragging
                 invert_steps: int = 60,          # optimisation steps for an uploaded photo
                 limits: UploadLimits = DEFAULT_LIMITS,
                 mapper: Mapper | None = None,    # identity/attribute swaps, when given
                 identities: IdentityBoundaries | None = None,   # the synthetic-identity page
                 workdir: str | Path | None = None,   # downloads are written here
                 ) -> None:
        keys = [d.key for d in directions]
        if len(set(keys)) != len(keys):
            raise ValueError(f"direction keys must be unique, got {keys}")
        self.generator = generator
        self.analyzer = analyzer
        self.directions = {d.key: d for d in directions}
        self.truncation_psi = float(truncation_psi)
        self.truncation_space = truncation_space
        self.preview_size = min(int(preview_size), int(generator.resolution))
        self.invert_steps = int(invert_steps)
        self.limits = limits
        self.mapper = mapper
        self.identities = identities
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="facelatent-serve-")
            weakref.finalize(self, shutil.rmtree, workdir, ignore_errors=True)
        self.workdir = Path(workdir)
        self.lock = threading.Lock()
        self._closed = False
        self._exports: deque[Path] = deque()

    @contextlib.contextmanager
    def _computing(self) -> Iterator[None]:
        """Hold the lock for a computation; refused once `close` has run. Every tensor
        operation of the service runs inside one (see `close` for why)."""
        with self.lock:
            if self._closed:
                raise FacelatentError("the editor is shutting down")
            yield

    def close(self) -> None:
        """Wait for the computation in progress, then refuse new ones. Call it before the
        process exits: a torch operation still running in a server thread at exit aborts the
        interpreter ("terminate called without an active exception")."""
        with self.lock:
            self._closed = True

    # -- faces in ------------------------------------------------------------------------------
    def random_seed(self) -> int:
        return secrets.randbelow(1_000_000)

    def face_from_seed(self, seed: float | str) -> Face:
        """The face `facelatent generate --seeds SEED` makes at the editor's truncation."""
        from facelatent.latents.sampling import latents_for_seeds

        try:
            number = float(seed)           # the page's number box may send 11 or 11.0
        except (TypeError, ValueError):
            number = float("nan")
        if not number.is_integer():
            raise ValueError(f"seed must be a whole number, got {seed!r}")
        value = int(number)
        if not 0 <= value < SEED_LIMIT:
            raise ValueError(f"seed must lie in [0, 2**32), got {value}")
        with self._computing():
            _, w = latents_for_seeds(self.generator, [value], self.truncation_psi,
                                     self.truncation_space)
            w = w.float()
        return self._with_reference(Face(f"seed{value:04d}", w, "seed", seed=value))

    def face_from_latents(self, data: bytes, name: str) -> Face:
        """The first face of an uploaded latents file (`uploads.read_latents_upload`)."""
        label = clean_name(name, "latents")
        start, kind = read_latents_upload(data, label, "w", self.limits)
        latent = torch.from_numpy(np.ascontiguousarray(start.latents[:1]))
        if latent.shape[-1] != self.generator.w_dim or (
                latent.ndim == 3 and latent.shape[1] != self.generator.num_ws):
            raise ValueError(f"{label} holds latents of shape {list(start.latents.shape[1:])}, "
                             f"but this generator takes w [{self.generator.w_dim}] or W+ "
                             f"[{self.generator.num_ws}, {self.generator.w_dim}]: they come "
                             "from another generator")
        note = (f"{label} holds {len(start)} faces; editing the first ({start.names[0]})"
                if len(start) > 1 else "")
        # An inverted photo had SFace in its loss (and maybe the mapping's E_id at its start).
        involved = ("sface",) if kind == "facelatent.inversion" else ()
        return self._with_reference(Face(start.names[0], latent, "latents", note=note,
                                         involved=involved))

    def align_upload(self, data: bytes, name: str) -> Aligned:
        """The largest face of an uploaded photo, FFHQ-aligned (checks: `uploads`)."""
        from facelatent.inversion import align_photo

        label = clean_name(name, "photo")
        with self._computing():
            image = read_photo_upload(data, label, self.limits)
            faces = align_photo(self.analyzer, image)
            if not faces:
                raise ValueError(f"no face found in {label}; upload a photo where a face is "
                                 "at least about 1/30 of the photo's width")
            face = max(faces, key=lambda f: _quad_area(f.transform))
            preview = to_uint8(face.crop[None])[0]
        return Aligned(label, face.crop[None], face.index, len(faces), preview)

    def invert(self, aligned: Aligned, progress: Progress | None = None) -> Face:
        """An aligned face inverted into W+ (`Inverter`, ``invert_steps`` steps; from the
        mapping's encoder when there is one), reporting ``progress(fraction, text)``."""
        from facelatent.inversion import Inverter

        encoder = self.mapper.encode if self.mapper is not None else None
        inverter = Inverter("wp", self.invert_steps, init="encoder" if encoder else "mean",
                            encoder=encoder)

        def report(step: int, total: int, _: Tensor) -> None:
            if progress is not None:
                progress(step / total, f"inverting {aligned.label}: step {step} of {total}")

        with self._computing():
            inverter.fit(self.generator, aligned.crop, self.analyzer, progress=report)
            latent = inverter.latents_.float().cpu()
        msssim = float(inverter.metrics_["msssim"][0])
        note = (f"{aligned.label}: face {aligned.index + 1} of {aligned.count}, inverted in W+ "
                f"({self.invert_steps} steps; MS-SSIM {msssim:.3f})")
        involved = {"sface"} | ({self.mapper.config.id_model} if encoder else set())
        out = Face(f"{aligned.label}_face{aligned.index}", latent, "photo", aligned=aligned.preview, note=note, involved=tuple(sorted(involved)))
        return self._with_reference(out)

    def face_from_photo(self, data: bytes, name: str, progress: Progress | None = None) -> Face:
        """`align_upload`, then `invert`."""
        return self.invert(self.align_upload(data, name), progress)

    def _with_reference(self, face: Face) -> Face:
        render = self.render(face, Edit())
        return replace(face, reference=self.analyse(render))

    # -- the edit ------------------------------------------------------------------------------
    def check_edit(self, edit: Edit) -> Edit:
        """``edit`` with its strengths as floats; ValueError for unknown sliders, strengths
        that are not finite or beyond :data:`MAX_STRENGTH`, and bad layers."""
        strengths: dict[str, float] = {}
        for key, value in edit.strengths.items():
            if key not in self.directions:
                raise ValueError(f"unknown slider {key!r}; the sliders are "
                                 f"{', '.join(self.directions)}")
            v = float(value)
            if not (np.isfinite(v) and abs(v) <= MAX_STRENGTH):
                raise ValueError(f"slider {key!r} must lie in [-{MAX_STRENGTH:g}, "
                                 f"{MAX_STRENGTH:g}] sigma, got {value!r}")
            strengths[key] = v
        unknown = [k for k in edit.keep_fixed if k not in self.directions]
        if unknown:
            raise ValueError(f"keep fixed: unknown sliders {unknown}")
        parse_layers(edit.layers, self.generator.num_ws, option="layers")
        return Edit(strengths, tuple(edit.keep_fixed), edit.layers)

    def edited_latent(self, face: Face, edit: Edit) -> Tensor:
        """``face.latent`` moved by every slider not at 0, in slider order (module docstring)."""
        edit = self.check_edit(edit)
        x = face.latent
        for key, d in self.directions.items():
            s = edit.strengths.get(key, 0.0)
            if s == 0.0:
                continue
            layers = edit.layers if edit.layers is not None else d.layers
            conditions = [self.directions[k].boundary for k in edit.keep_fixed if k != key]
            wide = layers is not None
            if wide:
                x = as_wplus(self.generator, x)
            x = edit_latents(x, d.boundary, [s], mode="relative", layers=layers,
                             conditions=conditions, unit="sigma", sigma=d.sigma,
                             num_ws=self.generator.num_ws if wide else None)[:, 0]
        return x

    def render(self, face: Face, edit: Edit) -> Render:
        """The edited face at full size and as a preview (`Render`)."""
        with self._computing():
            latent = self.edited_latent(face, edit)
            full = next(synthesize(self.generator, latent, "w", batch=1))
            preview = to_uint8(resize(full, self.preview_size))[0]
        return Render(latent, full, preview)

    def analyse(self, render: Render) -> Analysis:
        """Attribute scores (:data:`PANEL_ATTRIBUTES`) and both identity embeddings."""
        with self._computing(), torch.no_grad():
            geometry = self.analyzer.locate(render.full, generated=True)
            scores = self.analyzer.score(render.full, list(PANEL_ATTRIBUTES), geometry=geometry)
            embeddings = {m: self.analyzer.embed(render.full, m, geometry=geometry)[0]
                          .cpu().double().numpy() for m in RECOGNISERS}
            values = {k: float(v[0]) for k, v in scores.items()}
        return Analysis(values, embeddings)

    def report(self, face: Face, now: Analysis) -> dict[str, Any]:
        """The live panel: per attribute the unedited and current score, and per recogniser
        the cosine to the unedited face, its threshold and the same-person verdict, marked
        not independent for a recogniser that helped make the face (`Face.involved`)."""
        ref = face.reference or now
        rows = [{"attribute": k, "label": label, "unedited": ref.scores.get(k, float("nan")),
                 "now": now.scores.get(k, float("nan"))}
                for k, label in PANEL_ATTRIBUTES.items()]
        identity = []
        for model in RECOGNISERS:
            cos = float(np.dot(ref.embeddings[model], now.embeddings[model]))
            threshold = SAME_PERSON_THRESHOLD[model]
            identity.append({"model": model, "cosine": cos, "threshold": threshold,
                             "same_person": bool(cos > threshold),
                             "independent": model not in face.involved})
        return {"attributes": rows, "identity": identity}

    # -- files out -----------------------------------------------------------------------------
    def export(self, face: Face, edit: Edit, render: Render) -> tuple[Path, Path]:
        """Write the edited face as a full-size PNG and its latent as an .npz that `facelatent
        edit --latents` reads (a seed's as `generate` writes it, any other face's as `invert`
        does), in a fresh folder under ``workdir``. Returns both paths."""
        from facelatent.inversion.files import FORMAT as INVERSION_FORMAT
        from facelatent.inversion.files import FORMAT_VERSION as INVERSION_VERSION
        from facelatent.latents.sampling import LATENTS_FORMAT, LATENTS_VERSION

        folder = Path(tempfile.mkdtemp(prefix="edit-", dir=self.workdir))
        self._exports.append(folder)
        while len(self._exports) > KEEP_EXPORTS:      # a long session must not fill the disk
            shutil.rmtree(self._exports.popleft(), ignore_errors=True)
        stem = f"{face.name}_edited"
        png = folder / f"{stem}.png"
        with self._computing():
            pixels = to_uint8(render.full)[0]
            latent = render.latent.numpy().astype(np.float32)
        # zlib level 1: a quarter of the default level's time for a 1024 px face, 13 % larger
        Image.fromarray(pixels).save(png, format="PNG", compress_level=1)
        settings = {"editor": "facelatent serve", "face": face.name, "origin": face.origin,
                    "strengths": dict(edit.strengths), "keep_fixed": list(edit.keep_fixed),
                    "layers": edit.layers, "generator": getattr(self.generator, "name", ""),
                    "truncation_psi": self.truncation_psi}
        if face.seed is not None:
            arrays = {"seeds": np.asarray([face.seed], np.int64), "w": latent,
                      "truncation_psi": np.float32(self.truncation_psi), "space": np.str_("w"),
                      "generator": np.str_(getattr(self.generator, "name", ""))}
            npz = save_npz(folder / f"{stem}.npz", arrays, format=LATENTS_FORMAT,
                           version=LATENTS_VERSION)
        else:
            space = "wp" if latent.ndim == 3 else "w"
            arrays = {space: latent[0], "space": np.str_(space),
                      "settings": np.str_(json.dumps(settings)), "source": np.str_(""),
                      "face_index": np.int64(-1)}
            npz = save_npz(folder / f"{stem}.npz", arrays, format=INVERSION_FORMAT,
                           version=INVERSION_VERSION)
        return png, Path(npz)

    def command_line(self, face: Face, edit: Edit) -> str | None:
        """The `facelatent edit` command that makes the same image, when one command can (a
        seed face and one slider moved); None otherwise."""
        moved = [(k, v) for k, v in self.check_edit(edit).strengths.items() if v != 0.0]
        if face.seed is None or len(moved) != 1:
            return None
        key, s = moved[0]
        d = self.directions[key]
        kept = [self.directions[k].file for k in edit.keep_fixed if k != key]
        if d.file is None or None in kept:
            return None                   # a SeFa direction has no file to name
        parts = [(f"facelatent edit --seeds {face.seed} --boundary {d.file} --range {s:g} {s:g} "
                  f"--steps 1 --psi {self.truncation_psi:g} --size {self.generator.resolution}")]
        if edit.layers is not None:
            parts.append(f"--layers {edit.layers}")
        if kept:
            parts.append("--condition " + " ".join(map(str, kept)))
        return " ".join(parts) + " --out edits/"

    # -- identity mapping and synthetic identities ---------------------------------------------
    def swap(self, identity: Face, attributes: Face) -> Face:
        """The mapping's face with ``identity``'s identity and everything else from
        ``attributes`` (both rendered unedited). ValueError without a mapping."""
        if self.mapper is None:
            raise ValueError("no mapping loaded; start the editor with --mapping CHECKPOINT "
                             "(from `facelatent mapping train`)")
        faces = [self.render(f, Edit()).full for f in (identity, attributes)]
        with self._computing():
            w = self.mapper.swap(faces[0], faces[1]).float().cpu()
        name = f"{identity.name}-id_{attributes.name}-attr"
        return self._with_reference(Face(name[:80], w, "swap",
                                         involved=(self.mapper.config.id_model,)))

    @property
    def offset_units(self) -> str:
        """The identity page's ``max_off`` unit: "sigma" (the store's spread along each identity
        normal, as `facelatent dataset build` counts by default) when the boundaries hold it,
        else "raw" latent units."""
        ids = self.identities
        return "sigma" if ids is not None and ids.sigma is not None else "raw"

    def identity_page(self, reference: int, n: int = 8, max_off: float | None = None,
                      seed: int = 0) -> tuple[np.ndarray, list[str]]:
        """``n`` faces of the synthetic identity of reference seed ``reference`` (ExFaceGAN's
        paper sampling, ``max_off`` in `offset_units`; default the dataset builder's 6 sigma,
        or 2 raw units for boundaries without a spread), the reference first:
        ``[n + 1, P, P, 3]`` uint8 previews and a caption per face with its offset, its cosine
        to the reference by the recogniser that did not label the boundaries, and the
        same-person verdict."""
        from facelatent.datasets.sampling import sample_identity
        from facelatent.datasets.shard import DEFAULT_MAX_OFF

        ids = self.identities
        if ids is None:
            raise ValueError("no identity boundaries loaded; start the editor with "
                             "--identities FOLDER (from `facelatent identity fit`)")
        if not 1 <= int(n) <= 32:
            raise ValueError(f"faces per page must lie in 1..32, got {n}")
        row = ids.index(int(reference))          # KeyError naming the seed
        sigma = float(ids.sigma[row]) if ids.sigma is not None else 1.0
        if max_off is None:
            max_off = DEFAULT_MAX_OFF if ids.sigma is not None else RAW_MAX_OFF
        if not (np.isfinite(max_off) and max_off > 0):
            raise ValueError(f"max offset must be a positive number, got {max_off}")
        latents, offsets, _ = sample_identity(ids, int(n), max_off=float(max_off) * sigma,
                                              reference=int(reference), seed=(int(seed),
                                                                              int(reference)))
        x = torch.from_numpy(np.concatenate([ids.latents[row:row + 1], latents]))
        judge = "dlib" if ids.model == "sface" else "sface"
        with self._computing():
            images = torch.cat(list(synthesize(self.generator, x, ids.space, self.truncation_psi,
                                               self.truncation_space, batch=4)))
            emb = self.analyzer.embed(images, judge, generated=True).cpu().double().numpy()
            previews = to_uint8(resize(images, self.preview_size))
        cos = (emb @ emb[0]).tolist()
        verdict = ["same" if c > SAME_PERSON_THRESHOLD[judge] else "other" for c in cos]
        captions = [f"reference seed {int(reference)}"] + [
            f"offset {o / sigma:.2f}{' sigma' if ids.sigma is not None else ''}: {judge} "
            f"{c:.3f} ({v})" for o, c, v in zip(offsets, cos[1:], verdict[1:])]
        return previews, captions


def _quad_area(transform: Mapping[str, Any]) -> float:
    """Area of an alignment transform's crop square (its ``quad``, 4 corners)."""
    q = np.asarray(transform.get("quad", np.zeros((4, 2))), dtype=np.float64).reshape(4, 2)
    x, y = q[:, 0], q[:, 1]
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)
