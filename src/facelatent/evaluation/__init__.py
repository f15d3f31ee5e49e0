"""Evaluating edits (re-scoring, identity, drift) and the HTML report of a store's results.

    ev = evaluate_store("runs/ffhq", load_boundary("smile_w.npz"), np.linspace(-3, 3, 7), n=64)
    write_evaluation(ev, "runs/eval/smile")                 # evaluation.json, curves.png, grids
    build_report("runs/ffhq", "report.html", boundaries=["runs/boundaries"],
                 evaluations=["runs/eval"])                 # one self-contained HTML file
"""

from facelatent.evaluation.metrics import (
    EVALUATION_FORMAT,
    IDENTITY_RULE,
    EditEvaluation,
    evaluate_edit,
    evaluation_identity_model,
    score_names,
    spearman_rows,
    target_score,
    write_evaluation,
)
from facelatent.evaluation.report import INTERFACEGAN_PGGAN_VAL, build_report
from facelatent.evaluation.store import evaluate_store, pick_rows

__all__ = ["EVALUATION_FORMAT", "IDENTITY_RULE", "INTERFACEGAN_PGGAN_VAL", "EditEvaluation",
           "build_report", "evaluate_edit", "evaluate_store", "evaluation_identity_model",
           "pick_rows", "score_names", "spearman_rows", "target_score", "write_evaluation"]
