"""Training the mapping, in two stages, resumable and deterministic.

1. ``regress`` (no generator in the loop): E_attr and M learn to predict each store sample's
   known w from its render and its E_id embedding (whitened MSE). Every ``cross_every``-th
   step pairs different faces instead and asks a latent proxy (:mod:`.proxies`: an MLP fitted
   on the store that predicts the identity embedding and the pose and expression scores from
   w) for the first face's identity and the second's pose and expression, with D_W keeping w
   where the mapping network puts it. Cheap: a step reads 128 px images through a
   0.2 M-parameter trunk, so a CPU does thousands.
2. ``e2e`` (the paper's stage, the frozen generator in the loop): w from (identity image,
   attribute image) is rendered and judged by the identity, landmark, reconstruction and
   W-adversarial losses (:mod:`facelatent.mapping.losses`); every ``cross_every``-th step
   pairs different faces (identity image != attribute image), the others the same face. Only
   E_attr and M train (and D_W, on its own optimiser).

One folder per run: ``checkpoint.npz`` (the latest state: networks, both Adam states, the
step, the settings; see :mod:`facelatent.mapping.checkpoint`), ``log.jsonl`` (one line per
step with every loss term, and a line per validation), and ``regress.npz`` (the finished
first stage, kept when the second starts from it). The same call resumes a killed run: the
checkpoint is reloaded, log lines after its step are dropped, and every batch comes from a
random generator seeded by (seed, stage, step), so a resumed run takes the same batches as
an uninterrupted one and ends in the same state. A larger ``steps`` extends a finished stage.
"""

from __future__ import annotations

import shutil
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from facelatent.errors import FacelatentError
from facelatent.faces.analysis import FaceAnalyzer, get_analyzer
from facelatent.generators import Generator, get_generator
from facelatent.images import resize
from facelatent.io import jsonl_appender, writer_lock
from facelatent.io import read_jsonl as read_log
from facelatent.mapping import losses as L
from facelatent.mapping.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from facelatent.mapping.data import TrainingData
from facelatent.mapping.model import MapperConfig, build
from facelatent.mapping.proxies import (
    PROXY_ATTRIBUTES,
    LatentProxy,
    fit_proxy,
    load_proxy,
    save_proxy,
)
from facelatent.mapping.settings import BALANCED, PRESETS, STAGES, TrainSettings, preset
from facelatent.runs.sharded import Progress, check_resume

__all__ = ["BALANCED", "PRESETS", "STAGES", "TrainReport", "TrainSettings", "preset", "read_log",
           "train_mapping"]

CHECKPOINT, LOG, FIRST_STAGE, PROXY = "checkpoint.npz", "log.jsonl", "regress.npz", "proxy.npz"


@dataclass
class TrainReport:
    """What :func:`train_mapping` did. ``action``: "created", "resumed", "started from
    regress" or "complete" (nothing left to do)."""

    out: str
    stage: str
    action: str
    step: int                             # steps of the stage done, in all
    steps_run: int                        # in this call
    seconds: float
    recent: dict[str, float]              # mean of each logged term over the last 50 steps
    validation: dict[str, float]          # the last validation

    @property
    def steps_per_s(self) -> float:
        return self.steps_run / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "steps_per_s": self.steps_per_s}


def train_mapping(data: TrainingData, out: str | Path, settings: TrainSettings, *,
                  config: MapperConfig | None = None, generator: Generator | None = None,
                  analyzer: FaceAnalyzer | None = None,
                  progress: Progress | None = None) -> TrainReport:
    """Train (or resume, or extend) one stage of the mapping in the run folder ``out``.

    ``data``: the store's renders (:func:`facelatent.mapping.data.load_training_data`).
    ``config``: network sizes for a new run (default: :class:`MapperConfig` with the
    generator's sizes); ignored when ``out`` has a checkpoint. ``generator``, ``analyzer``:
    the networks to use (default: the store's generator and the shared face models, on
    ``settings.device``). ``progress``: told the total steps, then each step.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(settings.device)
    with writer_lock(out, "mapping run"):
        analyzer = analyzer or get_analyzer(device)
        G = generator or get_generator(data.source["generator"], device)
        run = _Run.open(out, data, settings, config, G, analyzer)
        if progress is not None:
            progress.start(settings.steps, run.ckpt.step)
        if run.ckpt.step >= settings.steps:
            return run.report("complete", 0, 0.0)
        t0 = time.perf_counter()
        start = run.ckpt.step
        with jsonl_appender(out / LOG) as log:
            if start == 0 and run.proxy_validation:
                log({"stage": settings.stage, "step": 0,
                     **{f"proxy_{k}": v for k, v in run.proxy_validation.items()}})
            for step in range(start, settings.steps):
                log(run.step(step))
                done = step + 1
                if done % settings.validate_every == 0 or done == settings.steps:
                    log(run.validate(done))
                if done % settings.checkpoint_every == 0 or done == settings.steps:
                    run.save()
                if progress is not None:
                    progress.update(1)
        return run.report(run.action, settings.steps - start, time.perf_counter() - t0)


class _Run:
    """The state of one stage of one run folder, and its step."""

    def __init__(self, out: Path, data: TrainingData, settings: TrainSettings, ckpt: Checkpoint,
                 G: Generator, analyzer: FaceAnalyzer, action: str) -> None:
        self.out, self.data, self.settings, self.ckpt = out, data, settings, ckpt
        self.G, self.analyzer, self.action = G, analyzer, action
        self.device = torch.device(settings.device)
        self.net = ckpt.model.to(self.device).train()
        self.disc = ckpt.disc.to(self.device) if ckpt.disc is not None else None
        for p in G.parameters() if isinstance(G, torch.nn.Module) else ():
            p.requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=settings.lr)
        self.proxy, self.proxy_validation = (_proxy(out, data, settings)
                                             if settings.stage == "regress" else (None, {}))
        adversarial = settings.stage == "e2e" or self.proxy is not None
        self.opt_d = (torch.optim.Adam(self.disc.parameters(), lr=settings.disc_lr,
                                       betas=(0.5, 0.999))
                      if self.disc is not None and adversarial else None)
        if "model" in ckpt.optimizers:
            self.opt.load_state_dict(ckpt.optimizers["model"])
        if self.opt_d is not None and "disc" in ckpt.optimizers:
            self.opt_d.load_state_dict(ckpt.optimizers["disc"])
        self.recent: list[dict[str, float]] = []
        self.validation: dict[str, float] = {}
        self._fake: Tensor | None = None       # e2e: this step's w for D_W, and its real rows
        self._real_rows = torch.zeros(0, dtype=torch.long)

    # -- opening a run folder ------------------------------------------------------------------
    @classmethod
    def open(cls, out: Path, data: TrainingData, settings: TrainSettings,
             config: MapperConfig | None, G: Generator, analyzer: FaceAnalyzer) -> _Run:
        path = out / CHECKPOINT
        if not path.exists():
            if settings.stage != "regress":
                raise ValueError(f"{out} has no checkpoint to start the e2e stage from: train "
                                 "the regress stage first (--stage regress)")
            return cls(out, data, settings, _new_checkpoint(data, settings, config, G, analyzer),
                       G, analyzer, "created")
        ckpt = load_checkpoint(path)
        check_resume(f"mapping data of {out}", ckpt.data, data.key,
                     "Train on the same store (and --holdout), or use a new --out folder.")
        if ckpt.stage == settings.stage:
            held = TrainSettings.from_json(ckpt.settings)
            check_resume(f"mapping run {out} ({ckpt.stage} stage)", held.resume_key(),
                         settings.resume_key(),
                         "Use the settings it was started with (a larger --steps extends it), "
                         "or a new --out folder.")
            ckpt.settings = settings.to_json()
            _trim_log(out / LOG, ckpt.stage, ckpt.step)
            return cls(out, data, settings, ckpt, G, analyzer, "resumed")
        if (ckpt.stage, settings.stage) != ("regress", "e2e"):
            raise ValueError(f"{out} holds a finished {ckpt.stage} stage; the stages run "
                             "regress, then e2e (use a new --out folder to start over)")
        planned = int(ckpt.settings.get("steps", 0))
        if ckpt.step < planned:
            raise ValueError(f"the regress stage in {out} is at step {ckpt.step} of {planned}; "
                             "finish it first (run the same regress command again)")
        shutil.copyfile(path, out / FIRST_STAGE)
        ckpt.history.append({"stage": ckpt.stage, "steps": ckpt.step,
                             "settings": ckpt.settings})
        if ckpt.disc is None:
            torch.manual_seed(settings.seed)
            ckpt.disc = build(replace(ckpt.config, attr_init="random"))[1]
        ckpt.stage, ckpt.step, ckpt.optimizers = settings.stage, 0, {}
        ckpt.settings = settings.to_json()
        _trim_log(out / LOG, settings.stage, 0)
        return cls(out, data, settings, ckpt, G, analyzer, "started from regress")

    # -- one step ------------------------------------------------------------------------------
    def _rng(self, step: int) -> torch.Generator:
        """The batch randomness of ``step``: a function of (seed, stage, step) alone."""
        key = zlib.crc32(f"{self.settings.seed}/{self.settings.stage}/{step}".encode())
        return torch.Generator().manual_seed(key)

    def step(self, step: int) -> dict[str, Any]:
        s = self.settings
        g = self._rng(step)
        rows = torch.randint(self.data.n_train, (s.batch,), generator=g)
        if s.stage == "regress":
            total, terms, line = self._regress_losses(step, rows, g)
        else:
            total, terms, line = self._e2e_losses(step, rows, g)
        if not torch.isfinite(total):
            raise FacelatentError(f"the loss became {float(total)} at step {step} of the "
                                  f"{s.stage} stage; the last checkpoint in {self.out} (step "
                                  f"{self.ckpt.step}) is intact: resume with a lower --lr")
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        if self._fake is not None:
            line.update(self._disc_step())
        self.ckpt.step = step + 1
        line = {"stage": s.stage, "step": step + 1, "loss": float(total.detach()),
                **{k: float(v.detach().mean()) for k, v in terms.items()}, **line}
        self.recent = [*self.recent[-49:], {k: v for k, v in line.items()
                                            if isinstance(v, float)}]
        return line

    def _regress_losses(self, step: int, rows: Tensor, g: torch.Generator,
                        ) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
        s, wt, net = self.settings, self.settings.weights, self.net
        self._fake = None
        if self.proxy is None or not _is_cross(s, step):
            images, w, ids = self.data.batch(rows, self.device)
            w_hat = net(ids, images)
            terms = {"latent": L.whitened_mse(w_hat, w, net.w_std)}
            return terms["latent"].mean(), terms, ({"cross": False} if self.proxy else {})
        # A cross step: identity from each face, pose and expression from the next one.
        attr_rows = rows.roll(1)
        images, _, _ = self.data.batch(attr_rows, self.device)
        ids = self.data.id_codes[rows].to(self.device)
        w_hat = net(ids, images)
        flat = w_hat.mean(1) if w_hat.ndim == 3 else w_hat
        pred_id, pred_attr = self.proxy(flat)
        assert self.data.scores is not None
        target = self.proxy.standardise(self.data.scores[attr_rows].to(self.device))
        terms = {"proxy_identity": 1 - (pred_id * ids).sum(1),
                 "proxy_attributes": (pred_attr - target).square().mean(1)}
        self._adversarial(w_hat, terms, g)
        weights = wt.as_dict()
        total = sum(weights[k] * v.mean() for k, v in terms.items())
        assert isinstance(total, Tensor)
        return total, terms, {"cross": True}

    def _adversarial(self, w_hat: Tensor, terms: dict[str, Tensor], g: torch.Generator) -> None:
        """Add D_W's non-saturating term for ``w_hat`` and keep what its own step needs."""
        net = self.net
        if self.disc is None or self.opt_d is None or not self.settings.weights.adversarial:
            return
        fake = net.whiten(w_hat).reshape(-1, net.config.w_dim)
        terms["adversarial"] = F.softplus(-self.disc(fake)).view(len(w_hat), -1).mean(1)
        # D_W steps after the mapping's step (its update would change the weights the
        # mapping's backward pass still needs); its real w are drawn here, from g.
        real_rows = torch.randint(self.data.n_train, (len(fake),), generator=g)
        self._fake, self._real_rows = fake.detach(), real_rows

    def _e2e_losses(self, step: int, rows: Tensor, g: torch.Generator,
                    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
        s, wt, net = self.settings, self.settings.weights, self.net
        cross = _is_cross(s, step)
        # A cross step pairs each identity with the next face of the batch (never itself).
        attr_rows = rows.roll(1) if cross else rows
        attr_images, attr_w, _ = self.data.batch(attr_rows, self.device)
        ids = self.data.id_codes[rows].to(self.device)
        w_hat = net(ids, attr_images)
        faces = resize(self.G.synthesis(w_hat), s.loss_size)
        targets = resize(attr_images, s.loss_size)
        terms: dict[str, Tensor] = {}
        if wt.identity:
            emb = self.analyzer.embed(faces, net.config.id_model, generated=True)
            terms["identity"] = L.identity_l1(emb, ids)
        if wt.landmarks:
            with torch.no_grad():
                target_points = self._points(targets)
            terms["landmarks"] = L.landmark_mse(self._points(faces), target_points)
        if not cross and wt.reconstruction:
            terms["reconstruction"] = L.reconstruction(faces, targets)
        if not cross and wt.latent:
            terms["latent"] = L.whitened_mse(w_hat, attr_w, net.w_std)
        line: dict[str, Any] = {"cross": cross}
        self._fake = None
        self._adversarial(w_hat, terms, g)
        weights = wt.as_dict()
        total = sum(weights[k] * v.mean() for k, v in terms.items())
        assert isinstance(total, Tensor)
        return total, terms, line

    def _points(self, faces: Tensor) -> Tensor:
        """face-api's 68 landmarks of FFHQ-aligned faces, in pixels, differentiable."""
        points = self.analyzer.locate(faces, generated=True).points68
        assert points is not None
        return points

    def _disc_step(self) -> dict[str, float]:
        assert self.disc is not None and self.opt_d is not None and self._fake is not None
        real = self.net.whiten(self.data.w[self._real_rows].to(self.device)).detach()
        d_loss, parts = L.disc_loss(self.disc, real, self._fake, self.settings.r1_gamma)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        self._fake = None
        return {"d_loss": float(d_loss.detach()), **parts}

    # -- validation, saving, reporting ---------------------------------------------------------
    @torch.no_grad()
    def validate(self, step: int, chunk: int = 64) -> dict[str, Any]:
        """Whitened w error on the held-out rows (same-image, no rendering): whether the
        mapping still lands where each face's known w is."""
        self.net.eval()
        errors = []
        for start in range(self.data.n_train, len(self.data.seeds), chunk):
            rows = torch.arange(start, min(start + chunk, len(self.data.seeds)))
            images, w, ids = self.data.batch(rows, self.device)
            w_hat = self.net(ids, images)
            errors.append(L.whitened_mse(w_hat, w, self.net.w_std).cpu())
        self.net.train()
        value = float(torch.cat(errors).mean()) if errors else float("nan")
        self.validation = {"val_latent": value}
        return {"stage": self.settings.stage, "step": step, "val_latent": value}

    def save(self) -> None:
        self.ckpt.optimizers = {"model": self.opt.state_dict()}
        if self.opt_d is not None:
            self.ckpt.optimizers["disc"] = self.opt_d.state_dict()
        save_checkpoint(self.out / CHECKPOINT, self.ckpt)

    def report(self, action: str, steps_run: int, seconds: float) -> TrainReport:
        keys = {k for line in self.recent for k in line if k != "step"}
        recent = {k: sum(line.get(k, 0.0) for line in self.recent)
                  / max(1, sum(k in line for line in self.recent)) for k in sorted(keys)}
        return TrainReport(str(self.out), self.settings.stage, action, self.ckpt.step, steps_run,
                           seconds, recent, self.validation)


def _is_cross(settings: TrainSettings, step: int) -> bool:
    """Whether ``step`` pairs different faces: every ``cross_every``-th step (the last of each
    group of ``cross_every``)."""
    k = settings.cross_every
    return bool(k) and step % k == k - 1


def _proxy(out: Path, data: TrainingData, settings: TrainSettings,
           ) -> tuple[LatentProxy | None, dict[str, float]]:
    """The run's latent proxy for regress cross steps: read from ``out/proxy.npz``, or fitted
    on the training rows (seeded by the run's seed) and saved there. None without cross steps."""
    if not settings.cross_every:
        return None, {}
    path = out / PROXY
    if path.exists():
        fit = load_proxy(path)
    else:
        if data.scores is None:
            raise ValueError("the regress stage's cross steps need the store's pose and "
                             f"expression scores ({', '.join(PROXY_ATTRIBUTES)}); sample the "
                             "store with its default --attributes, or pass --cross-every 0")
        fit = fit_proxy(data.w, data.id_codes, data.scores, PROXY_ATTRIBUTES, data.n_train,
                        steps=settings.proxy_steps, seed=settings.seed)
        save_proxy(path, fit)
    return fit.proxy.to(settings.device), fit.validation


def _new_checkpoint(data: TrainingData, settings: TrainSettings, config: MapperConfig | None,
                    G: Generator, analyzer: FaceAnalyzer) -> Checkpoint:
    config = config or MapperConfig(w_dim=G.w_dim, num_ws=G.num_ws)
    if (config.w_dim, config.num_ws) != (G.w_dim, G.num_ws):
        raise ValueError(f"config has w_dim {config.w_dim} and {config.num_ws} style inputs, "
                         f"the generator {data.source['generator']} {G.w_dim} and {G.num_ws}")
    if data.w.shape[1] != config.w_dim:
        raise ValueError(f"the store's w has {data.w.shape[1]} dimensions, the config {config.w_dim}")
    torch.manual_seed(settings.seed)
    faceapi = analyzer.model("landmarks68") if config.attr_init == "faceapi" else None
    net, disc = build(config, faceapi)   # type: ignore[arg-type]
    train_w = data.w[:data.n_train]
    net.set_w_statistics(train_w.mean(0), train_w.std(0).clamp_min(1e-6))
    generator = {"name": data.source["generator"], "w_dim": G.w_dim, "num_ws": G.num_ws,
                 "resolution": int(G.resolution),
                 "truncation_psi": data.source["truncation_psi"]}
    return Checkpoint(config, generator, net, disc, settings.stage, 0, settings.to_json(),
                      data.key)


def _trim_log(path: Path, stage: str, step: int) -> None:
    """Drop the log lines of ``stage`` after ``step`` (written after the checkpoint a killed
    run left), so a resumed run logs each step once."""
    with jsonl_appender(path, keep=lambda line: line.get("stage") != stage
                        or int(line.get("step", 0)) <= step):
        pass
