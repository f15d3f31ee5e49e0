"""Training a face recogniser on a facelatent dataset, resumable and deterministic.

1. The dataset's crops are read into memory (:func:`~facelatent.recognition.data.load_training_set`);
   its classes are the training classes. Nothing is held out: LFW is the test.
2. Each epoch visits every crop once in an order drawn from (seed, epoch); each batch is
   augmented (flip, resized crop, colour jitter) with draws from (seed, step). The learning
   rate is a pure function of the step (:meth:`TrainSettings.lr_at`). So the state after an
   epoch depends on the seed and the settings alone, and a run resumed from a checkpoint takes
   the same batches as one never stopped.
3. Backbone and margin head (CosFace or ArcFace) train with SGD and momentum; weight decay
   applies to weight matrices and kernels only (decaying BN and PReLU parameters only fights
   the normalisation).
4. After each epoch, with an LFW folder: the 10-fold verification accuracy of the backbone on
   cached crops (:mod:`facelatent.recognition.lfw`). Then one line in ``log.jsonl``, then the
   checkpoint (``state.pt``, then ``model.safetensors``; see :mod:`.checkpoint`).

The same call on the same folder resumes: ``config.json`` records the settings and the
dataset's key, and other settings or another dataset are refused in one line naming what
differs. Log lines of epochs after the checkpoint (a kill between log and checkpoint) are
dropped on resume, so each epoch is logged once.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from facelatent import __version__
from facelatent.errors import FacelatentError, FileFormatError
from facelatent.faces.analysis import FaceAnalyzer
from facelatent.faces.lfw import read_lfw
from facelatent.io import jsonl_appender, write_json, writer_lock
from facelatent.io import read_jsonl as read_log
from facelatent.recognition.checkpoint import (
    CONFIG,
    FORMAT,
    FORMAT_VERSION,
    LOG,
    STATE,
    Recognizer,
    copy_state,
    load_state,
    module_state,
    read_config,
    save_state,
    save_weights,
)
from facelatent.recognition.data import TrainingSet, augment, load_training_set
from facelatent.recognition.heads import MarginHead
from facelatent.recognition.lfw import LfwCrops, evaluate_crops, lfw_crops
from facelatent.recognition.model import build_backbone, count_parameters
from facelatent.recognition.settings import TrainSettings
from facelatent.runs.sharded import Progress, check_resume
from facelatent.runtime import keep_freed_memory

__all__ = ["LfwCheck", "TrainReport", "read_log", "train_recognizer"]


@dataclass(frozen=True)
class LfwCheck:
    """Where and how to measure LFW accuracy after each epoch."""

    lfw: str | Path                        # the LFW folder (pairs.txt and the images)
    folds: Sequence[int] | None = None     # 1-based folds (default: all ten)
    cache: str | Path | None = None        # crop cache folder (see recognition.lfw)
    analyzer: FaceAnalyzer | None = None   # face models for aligning (default: real ones)
    batch_size: int = 32


@dataclass
class TrainReport:
    """What :func:`train_recognizer` did. ``action``: "created", "resumed" or "complete"."""

    out: str
    action: str
    epoch: int                      # epochs done, in all
    epochs_run: int                 # in this call
    seconds: float                  # this call's training and evaluation
    parameters: int                 # of the backbone
    images: int
    classes: int
    skipped: int                    # dataset rows without a face (no crop)
    last: dict[str, Any]            # the last log line

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def train_recognizer(dataset: str | Path | TrainingSet, out: str | Path,
                     settings: TrainSettings, *, lfw: LfwCheck | None = None,
                     progress: Progress | None = None) -> TrainReport:
    """Train (or resume) a recogniser in the run folder ``out`` on ``dataset`` (a dataset
    folder, or its crops already read). ``lfw``: measure LFW accuracy after each epoch.
    ``progress``: told the total steps, then each step. Returns a :class:`TrainReport`."""
    out = Path(out)
    if lfw is not None:
        read_lfw(lfw.lfw)        # a wrong LFW folder fails before the run folder is made
    data = dataset if isinstance(dataset, TrainingSet) else load_training_set(dataset)
    out.mkdir(parents=True, exist_ok=True)
    with writer_lock(out, "recogniser run"):
        action = _open(out, data, settings)
        run = _Run(out, data, settings)
        if action == "resumed" and run.epoch >= settings.epochs:
            action = "complete"
        last = _last_line(out / LOG)
        report = TrainReport(str(out), action, run.epoch, 0, 0.0,
                             count_parameters(run.backbone), len(data.labels), len(data.classes),
                             data.skipped, last)
        if action == "complete":
            return report
        crops = None
        if lfw is not None:
            crops = lfw_crops(lfw.lfw, folds=lfw.folds, cache=lfw.cache, analyzer=lfw.analyzer,
                              device=settings.device, batch_size=lfw.batch_size)
        if progress is not None:
            progress.start(settings.epochs * run.steps_per_epoch, run.step)
        start, first = time.perf_counter(), run.epoch
        # lines past the checkpoint's epoch were written before a kill stopped its checkpoint
        with jsonl_appender(out / LOG, keep=lambda ln: int(ln.get("epoch", 0)) <= run.epoch) as log:
            while run.epoch < settings.epochs:
                line = run.train_epoch(progress)
                if crops is not None:
                    line.update(_lfw_line(run, crops))
                log(line)
                run.save()
                report.last = line
        report.epoch, report.epochs_run = run.epoch, run.epoch - first
        report.seconds = time.perf_counter() - start
        return report


def _open(out: Path, data: TrainingSet, settings: TrainSettings) -> str:
    """Create ``out/config.json``, or check that the run there is this one: "created" or
    "resumed"; ResumeMismatchError naming what differs otherwise."""
    if not (out / CONFIG).exists():
        write_json(out / CONFIG, {"model": settings.model.to_json(),
                                  "settings": settings.to_json(), "data": data.key,
                                  "dataset": str(data.path), "classes": list(data.classes),
                                  "facelatent_version": __version__},
                   format=FORMAT, version=FORMAT_VERSION)
        return "created"
    held = read_config(out)
    check_resume(f"recogniser run {out}", held.get("data", {}), data.key,
                 "Train on the same dataset, or use a new --out folder.")
    try:
        held_key = TrainSettings.from_json(held["settings"]).resume_key()
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{out / CONFIG}: its settings are incomplete or invalid "
                              f"({exc})") from None
    check_resume(f"recogniser run {out}", held_key, settings.resume_key(),
                 "Use the settings it was started with, or a new --out folder.")
    return "resumed"


def _rng(seed: int, what: str, index: int) -> torch.Generator:
    """A CPU generator for ``what`` ("order", "augment") number ``index``: a function of
    (seed, what, index) alone."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{what}/{index}".encode()))


class _Run:
    """The networks, optimiser and position of one run, fresh or from ``state.pt``."""

    def __init__(self, out: Path, data: TrainingSet, settings: TrainSettings) -> None:
        self.out, self.data, self.s = out, data, settings
        self.device = torch.device(settings.device)
        if self.device.type == "cpu":
            # Activations are freed and reallocated every step; unmapping them each time made
            # the kernel's page faults cost as much as the network itself.
            keep_freed_memory()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            self.backbone = build_backbone(settings.model)
            self.head = MarginHead(settings.model.embedding, len(data.classes), settings.loss,
                                   settings.scale, settings.m)
        self.backbone.to(self.device)
        self.head.to(self.device)
        decay, no_decay = [], []
        for p in [*self.backbone.parameters(), *self.head.parameters()]:
            (decay if p.ndim > 1 else no_decay).append(p)
        self.opt = torch.optim.SGD([{"params": decay, "weight_decay": settings.weight_decay},
                                    {"params": no_decay, "weight_decay": 0.0}],
                                   lr=settings.lr, momentum=settings.momentum)
        self.amp = settings.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.batch = min(settings.batch, len(data.labels))
        self.steps_per_epoch = len(data.labels) // self.batch   # the last partial batch dropped
        self.epoch = self.step = 0
        if (out / STATE).exists():
            self._restore(load_state(out))

    def _restore(self, state: dict[str, Any]) -> None:
        where = str(self.out / STATE)
        copy_state(self.backbone, state["backbone"], where)
        copy_state(self.head, state["head"], where)
        try:
            self.opt.load_state_dict(state["optimizer"])
            if self.amp and "scaler" in state:
                self.scaler.load_state_dict(state["scaler"])
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            torch.set_rng_state(state["rng"]["torch"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise FileFormatError(f"{where}: its optimizer or position does not fit this run "
                                  f"({str(exc).splitlines()[0][:160]}); use a new --out "
                                  "folder") from None
        if self.step != self.epoch * self.steps_per_epoch:
            raise FileFormatError(f"{where}: step {self.step} is not the end of epoch "
                                  f"{self.epoch} ({self.steps_per_epoch} steps each)")

    def train_epoch(self, progress: Progress | None) -> dict[str, Any]:
        s, data = self.s, self.data
        self.backbone.train()
        self.head.train()
        start = time.perf_counter()
        order = torch.randperm(len(data.labels), generator=_rng(s.seed, "order", self.epoch))
        total, right, seen = 0.0, 0, 0
        for i in range(self.steps_per_epoch):
            rows = order[i * self.batch:(i + 1) * self.batch]
            images = data.images[rows].to(self.device, non_blocking=True)
            labels = data.labels[rows].to(self.device)
            x = augment(images, s.augment, _rng(s.seed, "augment", self.step))
            for group in self.opt.param_groups:
                group["lr"] = s.lr_at(self.step, self.steps_per_epoch)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                embeddings = self.backbone(x)
            logits = self.head(embeddings.float(), labels)
            loss = F.cross_entropy(logits, labels)
            if not torch.isfinite(loss):
                raise FacelatentError(f"the loss became {float(loss)} at step {self.step} "
                                      f"(epoch {self.epoch + 1}); the last checkpoint in "
                                      f"{self.out} is intact: train again with a lower --lr")
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            self.step += 1
            with torch.no_grad():
                # Accuracy of the plain cosines (no margin): which class each crop is nearest.
                right += int((self.head.cosines(embeddings.float()).argmax(1) == labels).sum())
            total += float(loss.detach()) * len(rows)
            seen += len(rows)
            if progress is not None:
                progress.update(1)
        self.epoch += 1
        return {"epoch": self.epoch, "step": self.step, "loss": total / max(1, seen),
                "train_accuracy": right / max(1, seen),
                "lr": s.lr_at(self.step - 1, self.steps_per_epoch),
                "seconds": time.perf_counter() - start}

    def recognizer(self) -> Recognizer:
        return Recognizer(self.backbone, self.s.model, self.epoch)

    def save(self) -> None:
        state: dict[str, Any] = {
            "epoch": self.epoch, "step": self.step,
            "backbone": module_state(self.backbone), "head": module_state(self.head),
            "optimizer": self.opt.state_dict(), "rng": {"torch": torch.get_rng_state()}}
        if self.amp:
            state["scaler"] = self.scaler.state_dict()
        save_state(self.out, state)
        save_weights(self.out, self.backbone, self.epoch)


def _lfw_line(run: _Run, crops: LfwCrops) -> dict[str, Any]:
    """The LFW figures of the run's backbone as it is now, for the log."""
    start = time.perf_counter()
    r = evaluate_crops(run.recognizer(), crops, name=str(run.out))
    return {"lfw_accuracy": r.accuracy_mean, "lfw_std": r.accuracy_std,
            "lfw_folds": len(r.folds), "lfw_pairs_failed": r.pairs_failed,
            "lfw_seconds": time.perf_counter() - start}


def _last_line(path: Path) -> dict[str, Any]:
    lines = list(read_log(path)) if path.exists() else []
    return lines[-1] if lines else {}


