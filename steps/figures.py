"""Figures as PNG bytes (matplotlib, no display), without timestamps: equal data, equal bytes."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa


def _subplots(*grid: int, figsize: tuple[float, float], squeeze: bool = True):
    """(figure, axes) without pyplot: no global figure manager, so stages that draw at once in
    threads of one pipeline run (flows/runtime/pipeline.py) never share state, and no display."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, squeeze=squeeze)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # No software/date metadata: equal figures must give equal bytes.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def confusion_png(matrix: list[list[int]], classes: list, title: str) -> bytes:
    matrix_ = np.asarray(matrix)
    size = max(4.0, 0.5 * len(classes) + 2)
    fig, ax = _subplots(figsize=(size, size))
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
    epochs = [h["epoch"] for h in history]
    fig, ax = _subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    if not history:
        ax.text(0.5, 0.5, "no epochs: this model is not trained iteratively", ha="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _png(fig)


def image_grid_png(originals: np.ndarray, reconstructions: np.ndarray, shape: list[int], title: str) -> bytes:
    """Originals (top row) over their reconstructions (bottom row)."""
    n = len(originals)
    fig, axes = _subplots(2, n, figsize=(n * 1.1, 2.6))
    for i in range(n):
        for row, images in enumerate((originals, reconstructions)):
            axes[row, i].imshow(images[i].reshape(shape), cmap="gray", vmin=0, vmax=1)
            axes[row, i].axis("off")
    fig.suptitle(title)
    return _png(fig)


def scatter_png(actual: np.ndarray, predicted: np.ndarray, title: str) -> bytes:
    """Predicted against actual, with the diagonal a perfect model would sit on."""
    fig, ax = _subplots(figsize=(5, 5))
    ax.scatter(actual, predicted, s=4, alpha=0.5)
    lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="gray", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    fig.tight_layout()
    return _png(fig)


def pairplot_png(table: pa.Table, columns: list[str], label: str | None, title: str, max_rows: int = 2000) -> bytes:
    """Scatter plots of every pair of up to 8 numeric columns (histograms on the diagonal),
    coloured by the label, on at most ``max_rows`` rows (the first ones: deterministic)."""
    columns = columns[:8]
    sample = table.slice(0, max_rows)
    data = {c: sample.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in columns}
    groups: Any = sample.column(label).to_pylist() if label else [None] * sample.num_rows
    levels = sorted({str(g) for g in groups})
    colour = np.array([levels.index(str(g)) for g in groups])
    k = max(1, len(columns))
    fig, axes = _subplots(k, k, figsize=(2 * k + 1, 2 * k + 1), squeeze=False)
    for i, ci in enumerate(columns):
        for j, cj in enumerate(columns):
            ax = axes[i, j]
            if i == j:
                ax.hist(data[ci][np.isfinite(data[ci])], bins=30, color="gray")
            else:
                ax.scatter(data[cj], data[ci], c=colour, s=3, alpha=0.5, cmap="viridis")
            ax.tick_params(labelsize=6)
            if i == k - 1:
                ax.set_xlabel(cj, fontsize=7)
            if j == 0:
                ax.set_ylabel(ci, fontsize=7)
    if not columns:
        axes[0, 0].text(0.5, 0.5, "no numeric columns", ha="center", transform=axes[0, 0].transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)
