"""Face-recognition training on a facelatent dataset, and LFW verification (ExFaceGAN's test of a
synthetic dataset: does a recogniser trained only on it recognise real people?).

    from facelatent.recognition import LfwCheck, evaluate_lfw, load_recognizer, preset, train_recognizer
    report = train_recognizer("data/synth", "runs/fr", preset("cpu"),
                              lfw=LfwCheck("../shared/datasets/lfw"))
    net = load_recognizer("runs/fr")            # [N, 3, 112, 112] crops -> [N, D] unit rows
    result = evaluate_lfw("../shared/datasets/lfw", "runs/fr", cache="cache/lfw")

Modules: `model` (MobileFaceNet, IR-ResNet-18), `heads` (CosFace, ArcFace), `data` (the
dataset's crops, augmentation), `settings` (presets), `train` (the resumable loop),
`checkpoint` (the run folder, safe loading), `lfw` (the 10-fold protocol on our alignment).
"""

from facelatent.recognition.checkpoint import Recognizer, load_recognizer
from facelatent.recognition.data import TrainingSet, augment, load_training_set
from facelatent.recognition.heads import LOSSES, MarginHead
from facelatent.recognition.lfw import (
           PUBLISHED,
           LfwCrops,
           evaluate_crops,
           evaluate_lfw,
           lfw_crops,
)
from facelatent.recognition.model import ARCHITECTURES, RecognizerConfig, build_backbone
from facelatent.recognition.settings import PRESETS, Augmentation, TrainSettings, preset
from facelatent.recognition.train import (
           LfwCheck,
           TrainReport,
           read_log,
           train_recognizer,
)

__all__ = ["ARCHITECTURES", "LOSSES", "PRESETS", "PUBLISHED", "Augmentation", "LfwCheck",
           "LfwCrops", "MarginHead", "Recognizer", "RecognizerConfig", "TrainReport",
           "TrainSettings", "TrainingSet", "augment", "build_backbone", "evaluate_crops",
           "evaluate_lfw", "lfw_crops", "load_recognizer", "load_training_set", "preset",
           "read_log", "train_recognizer"]
