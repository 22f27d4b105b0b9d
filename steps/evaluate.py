"""evaluate: metrics of a classifier on the test holdout, and the figures that show them."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support, roc_auc_score, roc_curve

from steps.models import decide  # noqa: F401 - the rule evaluate measures with; callers take it from here too


def metrics(y: np.ndarray, proba: np.ndarray, classes: list, threshold: float | None = None) -> dict[str, Any]:
    """Accuracy, log loss, per-class precision/recall/F1/support and the confusion matrix; for
    two classes also precision, recall, F1 of class 1 and ROC AUC."""
    predicted = decide(proba, threshold)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    result = {
        "n_test": int(len(y)),
        "accuracy": round(float((predicted == y).mean()), 6),
        "loss": round(float(log_loss(y, proba, labels=labels)), 6),
        "macro_f1": round(float(f1.mean()), 6),
        "per_class": {
            str(c): {
                "precision": round(float(precision[i]), 6),
                "recall": round(float(recall[i]), 6),
                "f1": round(float(f1[i]), 6),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y, predicted, labels=labels).tolist(),
    }
    if len(classes) == 2:
        result |= {
            "precision": round(float(precision[1]), 6),
            "recall": round(float(recall[1]), 6),
            "f1": round(float(f1[1]), 6),
            "roc_auc": round(float(roc_auc_score(y, proba[:, 1])), 6) if len(set(y)) == 2 else None,
            "threshold": threshold,
        }
        if threshold is not None and threshold != 0.5:  # a tuned cut: the plain one beside it
            at_half = metrics(y, proba, classes, 0.5)
            result |= {"accuracy_at_0_5": at_half["accuracy"], "f1_at_0_5": at_half["f1"]}
    return result


def roc_curve_csv(y: np.ndarray, proba: np.ndarray) -> str:
    """The ROC curve as 'x,y' = (false positive rate, true positive rate) lines (a DVC plot):
    of class 1 for two classes, micro-averaged one-vs-rest for more."""
    if proba.shape[1] == 2:
        truth, score = y == 1, proba[:, 1]
    else:
        truth, score = (np.eye(proba.shape[1])[y] == 1).ravel(), proba.ravel()
    fpr, tpr, _ = roc_curve(truth, score)
    return _curve(fpr, tpr)


def error_curve_csv(errors: np.ndarray, points: int = 101) -> str:
    """'x,y' = (share of test rows, error at that quantile): how errors spread (a DVC plot)."""
    q = np.linspace(0, 1, points)
    return _curve(q, np.quantile(np.abs(errors), q))


def _curve(x: np.ndarray, y: np.ndarray) -> str:
    return "x,y\n" + "".join(f"{a:.6g},{b:.6g}\n" for a, b in zip(x, y, strict=True))


def slices(y: np.ndarray, proba: np.ndarray, groups: list, classes: list, threshold: float | None) -> dict[str, Any]:
    """Metrics per value of a categorical column, so a worse group shows."""
    groups_ = np.array(["(missing)" if g is None else str(g) for g in groups])
    out = {}
    for g in sorted(set(groups_)):
        mask = groups_ == g
        m = metrics(y[mask], proba[mask], classes, threshold)
        out[g] = {k: m[k] for k in ("n_test", "accuracy", "macro_f1", "f1", "roc_auc") if k in m}
    return out


def regression(y: np.ndarray, predictions: dict[str, np.ndarray], main: str | None = None) -> dict[str, Any]:
    """RMSE, MAE and R² in the target's units, per solver; the first (or ``main``) unsuffixed."""
    result: dict[str, Any] = {"n_test": int(len(y))}
    variance = float(((y - y.mean()) ** 2).mean())
    for name, pred in predictions.items():
        err = pred.astype(np.float64) - y
        mse = float((err**2).mean())
        suffix = "" if name == main else f"_{name}"
        result |= {
            f"rmse{suffix}": round(mse**0.5, 6),
            f"mae{suffix}": round(float(np.abs(err).mean()), 6),
            f"r2{suffix}": round(1 - mse / variance, 6) if variance else None,
        }
    return result


def reconstruction(x: np.ndarray, recon: np.ndarray) -> dict[str, Any]:
    """Mean squared reconstruction error over all values, and its spread over rows."""
    per_row = ((recon.astype(np.float64) - x) ** 2).mean(axis=1)
    return {
        "n_test": int(len(x)),
        "mse": round(float(per_row.mean()), 6),
        "mse_p95": round(float(np.quantile(per_row, 0.95)), 6),
    }


# A spreadsheet runs a cell that starts with one of these as a formula ('=cmd|...'): text
# cells that do get a leading apostrophe, which shows the text as it is (OWASP's advice).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet will not execute."""
    return f"'{text}" if text.startswith(FORMULA_START) else text


def predictions_csv(
    actual: np.ndarray,
    predicted: np.ndarray,
    classes: list | None = None,
    keys: list[str] | None = None,
    proba: np.ndarray | None = None,
) -> str:
    """One line per test row: its key (when given), 'actual,predicted' (class names, or values;
    DVC's confusion or scatter plot reads them) and, for a classifier, the probability of each
    class ('p_<class>'). Text cells are made safe to open in a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = [safe_cell(str(c)) for c in classes] if classes is not None else None
    header = (["key"] if keys is not None else []) + ["actual", "predicted"]
    header += [f"p_{c}" for c in classes] if classes is not None and proba is not None else []
    writer.writerow(header)
    for i, (a, p) in enumerate(zip(actual, predicted, strict=True)):
        row = [safe_cell(str(keys[i]))] if keys is not None else []
        row += [names[a], names[p]] if names is not None else [f"{a:.6g}", f"{p:.6g}"]
        row += [f"{v:.6g}" for v in proba[i]] if names is not None and proba is not None else []
        writer.writerow(row)
    return out.getvalue()
