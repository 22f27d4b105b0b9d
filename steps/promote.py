"""promote: the champion gate. A challenger replaces the champion only if it beats it on the same
test holdout by at least a margin; otherwise it is recorded as rejected, with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from steps import BadInput, evaluate

# Direction of each metric a gate may use: True when higher is better.
HIGHER_IS_BETTER = {
    "accuracy": True, "macro_f1": True, "f1": True, "roc_auc": True,
    "loss": False, "rmse": False, "mae": False, "r2": True, "mse": False,
}  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


def score(task: str, metric: str, y: np.ndarray, prediction: np.ndarray, classes: list | None,
          threshold: float | None) -> float:  # fmt: skip
    """``metric`` of a prediction on the test holdout (``y``: labels, values, or the inputs)."""
    if metric not in HIGHER_IS_BETTER:
        raise BadInput(f"promote: metric {metric!r} is not one of {', '.join(HIGHER_IS_BETTER)}")
    if task == "classification":
        result = evaluate.metrics(y, prediction, classes, threshold)
    elif task == "regression":
        result = evaluate.regression(y, {"model": prediction.reshape(-1)}, main="model")
    else:
        result = evaluate.reconstruction(y, prediction)
    if metric not in result or result[metric] is None:
        raise BadInput(f"promote: metric {metric!r} does not apply to a {task} model")
    return float(result[metric])


def judge(metric: str, challenger: float, champion: float | None, margin: float) -> Verdict:
    """Promote when there is no champion, or the challenger is better by at least ``margin``.
    A tie keeps the champion (a new model must earn the switch) unless ``margin`` is negative."""
    if champion is None:
        return Verdict(True, f"first model: {metric} {challenger:.6g}")
    gain = challenger - champion if HIGHER_IS_BETTER[metric] else champion - challenger
    better = "higher" if HIGHER_IS_BETTER[metric] else "lower"
    tie = abs(gain) <= 1e-12 * max(1.0, abs(champion))
    if gain >= margin and not (tie and margin >= 0):
        return Verdict(True, f"{metric} {challenger:.6g} vs champion {champion:.6g}: {gain:+.6g} ({better} is better)")
    if tie and margin == 0:
        return Verdict(False, f"{metric} {challenger:.6g} ties the champion on the same holdout; the champion stays")
    return Verdict(
        False,
        f"{metric} {challenger:.6g} vs champion {champion:.6g}: {gain:+.6g}, less than the margin {margin:g} "
        f"({better} is better)",
    )


def next_version(index: dict[str, Any]) -> int:
    return max((v["version"] for v in index["versions"]), default=0) + 1
