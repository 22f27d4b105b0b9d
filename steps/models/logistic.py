"""logistic: logistic regression, i.e. an MLP without hidden layers, with plain JSON coefficients.

With classes (c0, c1, ...) the model computes softmax(W ((x - mean) / std) + b). For two
classes that is P(c1) = sigmoid(w . z + b) with w = W[1] - W[0] and b = b[1] - b[0]: the
JSON holds that form, so a consumer needs a dot product and an exp.

Regularisation: ``train.weight_decay`` is an L2 penalty ``weight_decay / 2 * |W|²`` on the mean
loss. Left out of params.yaml it is scikit-learn's default, ``LogisticRegression(C=1)``: its
penalty ``|w|² / (2C)`` on the summed loss is ``weight_decay = 1 / (n C)`` on the mean loss for
the multinomial form (W of every class), ``2 / (n C)`` for two classes (W[1] - W[0] = w, and the
optimum has W[0] = -W[1]), n the train rows. ``weight_decay: 0`` is the unpenalised optimum
(scikit-learn's ``penalty=None``); when the train rows are linearly separable that optimum does
not exist, and the fitted spec says so in ``warnings``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from steps.models import Data, Fitted, OnEpoch, mlp

TASK = "classification"
TORCH_LOOP = True  # fit runs torchnet's training loop, small torch ops one after another
WARM_START = True


C = 1.0  # scikit-learn's default inverse regularisation strength: what an unset weight_decay means


def default_weight_decay(rows: int, classes: int) -> float:
    """The weight_decay that is scikit-learn's ``LogisticRegression(C=1)`` on ``rows`` train rows."""
    return (2.0 if classes == 2 else 1.0) / (max(rows, 1) * C)


def fit(data: Data, spec: dict[str, Any], params: dict[str, Any], on_epoch: OnEpoch | None) -> Fitted:
    """As mlp.fit without hidden layers; an unset ``weight_decay`` is scikit-learn's default
    (recorded in ``spec['weight_decay']``), and with none, separable train rows are reported in
    ``spec['warnings']``."""
    spec["model"] = spec["model"] | {"hidden": [], "dropout": 0.0}
    params = dict(params)
    if params["weight_decay"] is None:
        params["weight_decay"] = default_weight_decay(len(data.x_train), len(spec["classes"]))
        spec["weight_decay"] = {"value": params["weight_decay"], "rule": "unset: scikit-learn's C=1, 2/n (two "
                                "classes) or 1/n per train row"}  # fmt: skip
    fitted = mlp.fit(data, spec, params, on_epoch)
    if not params["weight_decay"] and (warning := separation(fitted, data)):
        fitted.spec.setdefault("warnings", []).append(warning)
    return fitted


def separation(fitted: Fitted, data: Data) -> str | None:
    """A sentence when the unpenalised fit classifies every train row right: the rows are then
    linearly separable, the likelihood has no maximum, and the weights only stop growing where
    L-BFGS gives up (probabilities all near 0 or 1, a tuned threshold at the edge). None otherwise."""
    w, b = fitted.arrays["net.0.weight"].astype(np.float64), fitted.arrays["net.0.bias"].astype(np.float64)
    z = (data.x_train.astype(np.float64) - fitted.arrays["mean"]) / fitted.arrays["std"]
    logits = z @ w.T + b
    if len(data.x_train) == 0 or not (logits.argmax(axis=1) == data.y_train).all():
        return None
    n = len(data.x_train)
    largest = float(np.abs(w[1] - w[0] if len(w) == 2 else w).max())  # as coefficients() gives them
    return (
        f"the {n} train rows are linearly separable (the fit classifies every one right), so logistic "
        f"regression with weight_decay 0 has no optimum: its weights grew to |w| {largest:.3g} on standardised "
        "features and its probabilities are near 0 or 1; leave train.weight_decay out for scikit-learn's default "
        f"(C=1, here weight_decay {default_weight_decay(n, len(w)):.3g}) or set it above 0"
    )


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
