"""evaluate: metrics of a classifier on the test holdout, and the figures that show them."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support


def predict(model: torch.nn.Module, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Class probabilities (rows, classes) of the native model."""
    with torch.no_grad():
        return (
            np.concatenate([model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])
            if len(x)
            else np.empty((0, 0), np.float32)
        )


def metrics(y: np.ndarray, proba: np.ndarray, classes: list) -> dict[str, Any]:
    """Accuracy, log loss, per-class precision/recall/F1/support and the confusion matrix."""
    predicted = proba.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    return {
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


def predictions_csv(y: np.ndarray, proba: np.ndarray, classes: list) -> str:
    """One 'actual,predicted' line per test row: DVC's confusion-matrix plot reads it."""
    names = [str(c) for c in classes]
    rows = (f"{names[a]},{names[p]}" for a, p in zip(y, proba.argmax(axis=1), strict=True))
    return "actual,predicted\n" + "\n".join(rows) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # No software/date metadata: equal figures must give equal bytes.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    _pyplot().close(fig)
    return buf.getvalue()


def confusion_png(matrix: list[list[int]], classes: list, title: str) -> bytes:
    plt = _pyplot()
    matrix_ = np.asarray(matrix)
    size = max(4.0, 0.5 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix_, cmap="Blues")
    ticks = range(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=45)
    ax.set_yticks(ticks, [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    for (i, j), n in np.ndenumerate(matrix_):
        ax.text(
            j,
            i,
            str(n),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if n > matrix_.max() / 2 else "black",
        )
    fig.tight_layout()
    return _png(fig)


def loss_png(history: list[dict[str, float]], title: str) -> bytes:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _png(fig)
