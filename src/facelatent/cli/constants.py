"""Library values that the parsers show or check, copied here so that building a parser (and
every `--help`) imports neither torch nor the model registry. tests/test_cli_startup.py checks
each against the value it copies; change both together."""

from __future__ import annotations

# facelatent.faces.registry
IDENTITY_MODELS = ("sface", "dlib")
DEFAULT_ATTRIBUTES = ("age", "gender", "smile", "yaw", "pitch", "roll", "mouth_open",
                      "eyes_open", "eyeglasses")
STORE_ATTRIBUTES = ("age", "gender", "gender_logit", "smile", "smile_logit",
                    "expression_neutral", "expression_happy", "expression_sad",
                    "expression_angry", "expression_fearful", "expression_disgusted",
                    "expression_surprised", "yaw", "pitch", "roll", "mouth_open", "eyes_open",
                    "eyeglasses")

# facelatent.latents.sampling
MIN_SIZE, MAX_SIZE = 16, 4096
MAX_BATCH = 512
GENERATE_MAX_SEEDS = 10_000

# facelatent.boundaries.linear
SOLVERS = ("svc", "logistic", "lda", "linear-svc", "mean-diff")
DEFAULT_SOLVER = "svc"                 # LinearBoundary's default solver

# facelatent.datasets.sampling and facelatent.datasets.shard
SAMPLE_MODES = ("paper", "code", "random", "varied")
OFFSET_UNITS = ("sigma", "raw")
DEFAULT_MAX_OFF = 6.0
