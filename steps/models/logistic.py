"""logistic: logistic regression, i.e. an MLP without hidden layers, with plain JSON coefficients.

With classes (c0, c1, ...) the model computes softmax(W ((x - mean) / std) + b). For two
classes that is P(c1) = sigmoid(w . z + b) with w = W[1] - W[0] and b = b[1] - b[0]: the
JSON holds that form, so a consumer needs a dot product and an exp.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from steps.models import Data, Fitted, OnEpoch, mlp

TASK = "classification"
EXCLUSIVE = True  # fit seeds torch's global RNG: one such training at a time per process
WARM_START = True


def fit(data: Data, spec: dict[str, Any], params: dict[str, Any], on_epoch: OnEpoch | None) -> Fitted:
    spec["model"] = spec["model"] | {"hidden": []}
    return mlp.fit(data, spec, params, on_epoch)


predict = mlp.predict
to_onnx = mlp.to_onnx


def coefficients(fitted: Fitted) -> dict[str, Any]:
    """Weights, bias, normalisation constants, feature order, classes, decision threshold."""
    w, b = fitted.arrays["net.0.weight"].astype(np.float64), fitted.arrays["net.0.bias"].astype(np.float64)
    mean = np.broadcast_to(fitted.arrays["mean"], (w.shape[1],))
    std = np.broadcast_to(fitted.arrays["std"], (w.shape[1],))
    coefs: dict[str, Any] = {
        "model": "logistic",
        "features": fitted.spec["feature_names"],
        "classes": fitted.spec["classes"],
        "mean": mean.tolist(),
        "std": std.tolist(),
    }
    if len(fitted.spec["classes"]) == 2:
        coefs |= {
            "formula": "p = 1 / (1 + exp(-(sum_i weights[i] * (x[i] - mean[i]) / std[i] + bias))); "
            "predict classes[1] when p >= threshold",
            "weights": (w[1] - w[0]).tolist(),
            "bias": float(b[1] - b[0]),
            "threshold": fitted.spec.get("threshold", 0.5),
        }
    else:
        coefs |= {
            "formula": "p = softmax(weights @ ((x - mean) / std) + bias)",
            "weights": w.tolist(),
            "bias": b.tolist(),
        }
    return coefs


def predict_coefficients(coefs: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """Class probabilities from the JSON alone, in plain numpy: what a Go service would do."""
    z = (x.astype(np.float64) - np.array(coefs["mean"])) / np.array(coefs["std"])
    if len(coefs["classes"]) == 2:
        p = 1.0 / (1.0 + np.exp(-(z @ np.array(coefs["weights"]) + coefs["bias"])))
        return np.stack([1 - p, p], axis=1)
    logits = z @ np.array(coefs["weights"]).T + np.array(coefs["bias"])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
