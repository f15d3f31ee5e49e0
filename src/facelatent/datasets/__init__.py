"""Synthetic face-recognition datasets (ExFaceGAN, Boutros et al. IJCB 2023): a folder of aligned
112x112 crops per synthetic identity with its manifest (`dataset.json`) and one metadata row per
generated sample (`metadata.parquet`), and the measures of how usable such a dataset is for
training a recogniser: verification scores, EER, FNMR at a fixed FMR, identity collisions,
intra-class attribute spread (`facelatent.datasets.quality`) and the HTML report that compares a
dataset with a baseline (`facelatent.datasets.report`).

    from facelatent.datasets import DatasetSettings, build_dataset, build_quality_report
    build_dataset("data/synth", identities, DatasetSettings(per_identity=50))      # 6 sigma
    build_dataset("data/varied", identities, DatasetSettings(mode="varied"))
    build_quality_report("data/synth", "data/synth/report.html", lfw="../shared/datasets/lfw")

Modules: `sampling` (latents of one synthetic identity around its boundary), `variation` (the
attribute directions of the "varied" mode), `shard` (the work for one shard: render, align,
score, embed), `writer` (the resumable dataset folder), `quality`, `report` and `lfw` (LFW's
own intra-class spread, the reference for a dataset's).
"""

from facelatent.datasets.lfw import LfwSpread, lfw_spread
from facelatent.datasets.quality import dataset_quality, read_dataset
from facelatent.datasets.report import build_quality_report
from facelatent.datasets.sampling import SAMPLE_MODES, sample_identity
from facelatent.datasets.shard import DatasetSettings, build_shard, plan_classes
from facelatent.datasets.variation import AttributeDirections, attribute_directions
from facelatent.datasets.writer import DatasetReport, build_dataset

__all__ = ["SAMPLE_MODES", "AttributeDirections", "DatasetReport", "DatasetSettings",
           "LfwSpread", "attribute_directions", "build_dataset", "build_quality_report",
           "build_shard", "dataset_quality", "lfw_spread", "plan_classes", "read_dataset",
           "sample_identity"]
