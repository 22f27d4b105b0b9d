"""linear: linear regression, solved in closed form (least squares) and by mini-batch SGD.

Features and target are standardised with constants fitted on train rows; predictions are
in the target's original units: y = y_mean + y_std * (w . ((x - mean) / std) + b).
``model.solver`` picks the one that is published; metrics report both.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from steps import BadInput
from steps.models import Data, Epoch, Fitted, OnEpoch, torchnet

TASK = "regression"
SOLVERS = ("closed", "sgd")


def _closed(z: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, float]:
    design = np.hstack([z, np.ones((len(z), 1))])
    solution, *_ = np.linalg.lstsq(design, t, rcond=None)
    return solution[:-1], float(solution[-1])


def _sgd(z, t, zv, tv, params, on_epoch, fitted, pack) -> tuple[np.ndarray, float]:
    """Mini-batch SGD on the mean squared error, seeded, keeping the best validation epoch."""
    rng = np.random.default_rng(params["seed"])
    w, b = np.zeros(z.shape[1]), 0.0
    best = (np.inf, w, b)
    batch = params["batch_size"]
    for epoch in range(1, params["epochs"] + 1):
        started = time.perf_counter()
        lr = params["lr"] * (
            0.5 * (1 + np.cos(np.pi * (epoch - 1) / params["epochs"])) if params["schedule"] == "cosine" else 1
        )
        total = 0.0
        for idx in np.array_split(rng.permutation(len(z)), max(1, len(z) // batch)):
            err = z[idx] @ w + b - t[idx]
            total += float(err @ err)
            w = w - lr * 2 * z[idx].T @ err / len(idx)
            b = b - lr * 2 * err.mean()
        val_err = zv @ w + b - tv
        record = Epoch(
            epoch, total / len(z), float(val_err @ val_err / len(zv)), None, float(lr), time.perf_counter() - started
        )
        fitted.history.append(record)
        if record.val_loss < best[0]:
            best, fitted.best_epoch = (record.val_loss, w, b), epoch
        if on_epoch is not None:
            fitted.arrays = pack(w, b)
            on_epoch(record, fitted)
    return best[1], best[2]


def fit(data: Data, spec: dict[str, Any], params: dict[str, Any], on_epoch: OnEpoch | None) -> Fitted:
    if spec["model"]["solver"] not in SOLVERS:
        raise BadInput(f"train: model.solver is {spec['model']['solver']!r}; expected one of {SOLVERS}")
    mean, std = data.mean.astype(np.float64), data.std.astype(np.float64)
    y_mean, y_std = float(data.y_train.mean()), float(data.y_train.std() or 1.0)
    z = (data.x_train - mean) / std
    zv = (data.x_val - mean) / std
    t, tv = (data.y_train - y_mean) / y_std, (data.y_val - y_mean) / y_std
    w_closed, b_closed = _closed(z, t)
    fitted = Fitted(spec, {})

    def pack(w_sgd: np.ndarray, b_sgd: float) -> dict[str, np.ndarray]:
        return {
            "closed.weight": w_closed,
            "closed.bias": np.array([b_closed]),
            "sgd.weight": w_sgd,
            "sgd.bias": np.array([b_sgd]),
            "mean": np.broadcast_to(mean, (z.shape[1],)).copy(),
            "std": np.broadcast_to(std, (z.shape[1],)).copy(),
            "y_mean": np.array([y_mean]),
            "y_std": np.array([y_std]),
        }

    w_sgd, b_sgd = _sgd(z, t, zv, tv, params, on_epoch, fitted, pack)
    fitted.arrays = pack(w_sgd, b_sgd)
    return fitted


def coefficients(fitted: Fitted, solver: str | None = None) -> dict[str, Any]:
    solver = solver or fitted.spec["model"]["solver"]
    a = fitted.arrays
    return {
        "model": "linear",
        "solver": solver,
        "formula": "y = y_mean + y_std * (sum_i weights[i] * (x[i] - mean[i]) / std[i] + bias)",
        "features": fitted.spec["feature_names"],
        "weights": a[f"{solver}.weight"].tolist(),
        "bias": float(a[f"{solver}.bias"][0]),
        "mean": a["mean"].tolist(),
        "std": a["std"].tolist(),
        "y_mean": float(a["y_mean"][0]),
        "y_std": float(a["y_std"][0]),
    }


def predict_coefficients(coefs: dict[str, Any], x: np.ndarray) -> np.ndarray:
    z = (x.astype(np.float64) - np.array(coefs["mean"])) / np.array(coefs["std"])
    return coefs["y_mean"] + coefs["y_std"] * (z @ np.array(coefs["weights"]) + coefs["bias"])


def predict_all(fitted: Fitted, x: np.ndarray) -> dict[str, np.ndarray]:
    return {s: predict_coefficients(coefficients(fitted, s), x) for s in SOLVERS}


def predict(fitted: Fitted, x: np.ndarray) -> np.ndarray:
    return predict_coefficients(coefficients(fitted), x)


class _Linear(nn.Module):
    def __init__(self, coefs: dict[str, Any]):
        super().__init__()
        for name in ("mean", "std", "weights"):
            self.register_buffer(name, torch.tensor(coefs[name], dtype=torch.float32))
        self.bias, self.y_mean, self.y_std = coefs["bias"], coefs["y_mean"], coefs["y_std"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.y_mean + self.y_std * (((x - self.mean) / self.std) @ self.weights + self.bias)


def to_onnx(fitted: Fitted) -> dict[str, bytes]:
    return {"model.onnx": torchnet.to_onnx(_Linear(coefficients(fitted)), fitted.spec["n_features"], "prediction")}
